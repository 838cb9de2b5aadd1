/**
 * Backup and restore throughput to an S3 datastore as a ratio to a local datastore, in the same
 * run on the same machine (issue 16):
 *   node --import tsx bench/s3.ts [--size MB] [--tsx] [--keep]
 *
 * Starts a one-node Ceph cluster (test/helpers/ceph-cluster.ts: memstore OSD, RADOS Gateway on
 * loopback https with a self-signed certificate, as an operator would configure an endpoint), the
 * Stowage server (its datastore `local` on the work directory's disk) and an S3 datastore `bucketstore` on
 * a fresh bucket with `max-cache-size=64MiB`, so the cache keeps 4 chunks (PBS's 16 MiB slots)
 * and a restore reads nearly every chunk from the bucket. The data (`--size`, default 100 MB):
 * files of 4 MiB, half random, half text. Each store gets a first backup with stowage-client
 * (tar) and a full restore of it; the stores take turns so both see the same machine. Prints
 * seconds and MB/s per step and the S3 store's throughput over the local one's (1 = as fast),
 * with the load average before and after: not a test, and the figures move with the load.
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { CreateBucketCommand } from '@aws-sdk/client-s3';
import { createS3Client } from '../src/s3/s3-client.js';
import { loginApi, taskEnd } from '../test/e2e/backup-helpers.js';
import { startCephCluster } from '../test/helpers/ceph-cluster.js';
import { fromSources, launcherEnv, startServer, transpile } from './lib/stowage-process.js';

const args = process.argv.slice(2);
const arg = (name: string, def: string) => {
  const i = args.indexOf(`--${name}`);
  return i === -1 ? def : (args[i + 1] ?? def);
};
const sizeMb = Number(arg('size', '100')) || 100;
const useTsx = args.includes('--tsx');
const keep = args.includes('--keep');
const PASSWORD = 'bench-secret-1';
const FILE = 4 * 1024 * 1024;
const TIME = 1_700_000_000;

function makeData(dir: string): number {
  mkdirSync(dir, { recursive: true });
  const text = Buffer.from('lorem ipsum dolor sit amet backup chunk datastore restore bucket\n'.repeat(64));
  let total = 0;
  for (let i = 0; total < sizeMb * 1e6; i++) {
    const data = Buffer.allocUnsafe(FILE);
    // random half from the kernel's generator, quick enough for hundreds of MB
    spawnSync('head', ['-c', String(FILE / 2), '/dev/urandom'], { maxBuffer: FILE }).stdout.copy(data, 0);
    for (let off = FILE / 2; off < FILE; off += text.length) text.copy(data, off);
    writeFileSync(join(dir, `file-${String(i).padStart(4, '0')}.bin`), data);
    total += FILE;
  }
  return total;
}

const load = () =>
  loadavg()
    .map((l) => l.toFixed(2))
    .join(' ');

const work = mkdtempSync(join(tmpdir(), 'stowage-bench-s3-'));
const loadBefore = load();
const cluster = await startCephCluster();
let stopServer: (() => Promise<void>) | undefined;
try {
  const run = useTsx ? fromSources : transpile(join(work, 'js'));
  const server = await startServer(join(work, 'server'), run, { password: PASSWORD });
  stopServer = server.stop;
  const api = await loginApi(server, PASSWORD);
  const bucket = `bench-${Date.now()}`;
  const s3 = createS3Client({
    endpoint: cluster.endpoint,
    region: cluster.region,
    accessKey: cluster.accessKey,
    secretKey: cluster.secretKey,
    pathStyle: true,
  });
  await s3.send(new CreateBucketCommand({ Bucket: bucket }));
  s3.destroy();
  await api.call('POST', '/config/s3', {
    id: 'rgw',
    endpoint: '127.0.0.1',
    port: cluster.httpsPort,
    region: cluster.region,
    'access-key': cluster.accessKey,
    'secret-key': cluster.secretKey,
    'path-style': true,
    fingerprint: cluster.fingerprint,
  });
  const created = await taskEnd(
    api,
    await api.call<string>('POST', '/config/datastore', {
      name: 'bucketstore',
      path: join(work, 'bucketstore-cache'),
      backend: `type=s3,client=rgw,bucket=${bucket},max-cache-size=64MiB`,
    }),
  );
  if (created.status !== 'OK') throw new Error(created.log.join('\n'));

  const data = join(work, 'data');
  const bytes = makeData(data);
  const client = (store: string, argv: string[]) => {
    const t0 = process.hrtime.bigint();
    const r = spawnSync(process.execPath, [...run('src/cli/stowage-client.ts'), ...argv], {
      env: {
        ...process.env,
        ...launcherEnv('src/cli/stowage-client.ts'),
        HOME: join(work, 'home'),
        STOWAGE_REPOSITORY: `root@pam@${server.host}:${server.port}:${store}`,
        STOWAGE_PASSWORD: PASSWORD,
        STOWAGE_FINGERPRINT: server.fingerprint,
      },
      encoding: 'utf8',
    });
    if (r.status !== 0) throw new Error(`stowage-client ${argv.join(' ')} on ${store}: ${r.stderr}`);
    return Number(process.hrtime.bigint() - t0) / 1e9;
  };
  const results: Record<string, { backup: number; restore: number }> = {};
  // backups first, then restores, alternating stores, so neither runs on a warmer machine
  for (const store of ['local', 'bucketstore']) {
    results[store] = {
      backup: client(store, [
        'backup',
        `data.tar:${data}`,
        '--backup-id',
        'bench',
        '--backup-time',
        String(TIME),
      ]),
      restore: 0,
    };
  }
  for (const store of ['bucketstore', 'local']) {
    const target = join(work, `restore-${store}`);
    results[store]!.restore = client(store, [
      'restore',
      'host/bench/2023-11-14T22:13:20Z',
      'data.tar',
      target,
    ]);
    rmSync(target, { recursive: true, force: true });
  }
  const traffic = (
    await api.call<{ 's3-statistics': { uploaded: number; downloaded: number; get: number; put: number } }>(
      'GET',
      '/admin/datastore/bucketstore/status',
    )
  )['s3-statistics'];
  const mbps = (secs: number) => (bytes / 1e6 / secs).toFixed(1);
  console.log(
    `data: ${(bytes / 1e6).toFixed(0)} MB in ${bytes / FILE} files; Ceph started in ${cluster.startupMs} ms`,
  );
  console.log('store        step     seconds  MB/s');
  for (const [store, r] of Object.entries(results)) {
    console.log(`${store.padEnd(12)} backup  ${r.backup.toFixed(2).padStart(8)}  ${mbps(r.backup)}`);
    console.log(`${store.padEnd(12)} restore ${r.restore.toFixed(2).padStart(8)}  ${mbps(r.restore)}`);
  }
  console.log(
    `bucket traffic: ${(traffic.uploaded / 1e6).toFixed(1)} MB up in ${traffic.put} PUTs, ` +
      `${(traffic.downloaded / 1e6).toFixed(1)} MB down in ${traffic.get} GETs`,
  );
  const ratio = (step: 'backup' | 'restore') =>
    (results.local![step] / results.bucketstore![step]).toFixed(2);
  console.log(`S3 throughput / local: backup ${ratio('backup')}x, restore ${ratio('restore')}x`);
  console.log(
    `load average (1/5/15 min): before ${loadBefore}, after ${load()}; ${String(
      spawnSync('nproc', { encoding: 'utf8' }).stdout.trim(),
    )} cores`,
  );
} finally {
  await stopServer?.();
  await cluster.stop();
  if (!keep) rmSync(work, { recursive: true, force: true });
  else console.log(`kept ${work}`);
}
