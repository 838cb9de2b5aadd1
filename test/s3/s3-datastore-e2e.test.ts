/**
 * S3 datastores end to end (issue 16) with real processes: the server (its own process) creates a
 * datastore with PBS 4's `backend type=s3,...` on Ceph's RADOS Gateway (https, pinned
 * fingerprint, as an operator configures it), `stowage-client` backs up into it and restores byte
 * for byte, and the bucket holds what PBS 4 would put there.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { GetObjectCommand, ListObjectsV2Command, PutObjectCommand } from '@aws-sdk/client-s3';
import { BackupWriter } from '../../src/client/backup-writer.js';
import { ChunkPool } from '../../src/client/chunk-pool.js';
import type { ApiClient } from '../../src/client/connection.js';
import { describeTree, makeTree } from '../client/tree-fixture.js';
import { startTestGateway, testS3Target } from '../helpers/ceph-cluster.js';
import { openIndexReader } from '../../src/datastore/open-index.js';
import { openFilesUnder } from '../helpers/files.js';
import { createTestBucket, testEndpointConfig, type TestBucket } from '../helpers/s3-test-bucket.js';
import { loginApi, runClient, startE2eServer, taskEnd, type E2eServer } from '../e2e/backup-helpers.js';

const T1 = 1_780_000_000;
let srv: E2eServer;
let api: ApiClient;
let bucket: TestBucket;
let src: string;
let image: string;
const servers: E2eServer[] = [];

before(async () => {
  const target = await testS3Target();
  [srv, bucket] = await Promise.all([startE2eServer('stowage-s3-e2e-'), createTestBucket('e2e')]);
  api = await loginApi(srv);
  await api.call('POST', '/config/s3', testEndpointConfig(target, 'rgw'));
  src = join(srv.root, 'src');
  makeTree(src, { scale: 2 * 1024 * 1024 });
});

after(async () => {
  await srv?.stop();
  for (const other of servers) await other.stop();
  bucket?.client.destroy();
});

const repo = (s: E2eServer, store: string) => ({
  ...s.env,
  STOWAGE_REPOSITORY: `root@pam@${s.host}:${s.port}:${store}`,
});

async function backup(s: E2eServer, store: string, id: string, time: number) {
  const res = await runClient(
    [
      'backup',
      `root.tar:${src}`,
      `disk.img:${image}`,
      '--backup-id',
      id,
      '--backup-time',
      String(time),
      '--output-format',
      'json',
    ],
    repo(s, store),
  );
  assert.equal(res.code, 0, res.stderr);
}

type SnapshotItem = {
  'backup-type': string;
  'backup-id': string;
  'backup-time': number;
  files: Array<{ filename: string }>;
};

async function snapshotsOf(client: ApiClient, store: string): Promise<string[]> {
  const list = await client.call<SnapshotItem[]>('GET', `/admin/datastore/${store}/snapshots`);
  return list
    .map(
      (i) =>
        `${i['backup-type']}/${i['backup-id']}/${i['backup-time']}: ${i.files
          .map((f) => f.filename)
          .sort()
          .join(' ')}`,
    )
    .sort();
}

const sha = (p: string) => createHash('sha256').update(readFileSync(p)).digest('hex');

const backendOf = (bucketName: string, extra = '') => `type=s3,client=rgw,bucket=${bucketName}${extra}`;

async function createStore(name: string, extra: Record<string, unknown> = {}): Promise<void> {
  const upid = await api.call<string>('POST', '/config/datastore', {
    name,
    path: join(srv.root, `cache-${name}`),
    backend: backendOf(bucket.bucket),
    ...extra,
  });
  const end = await taskEnd(api, upid);
  assert.equal(end.status, 'OK', end.log.join('\n'));
}

async function keysUnder(prefix: string): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  let token: string | undefined;
  do {
    const page = await bucket.client.send(
      new ListObjectsV2Command({ Bucket: bucket.bucket, Prefix: prefix, ContinuationToken: token }),
    );
    for (const o of page.Contents ?? []) out.set(o.Key!, `${o.ETag} ${o.LastModified?.toISOString()}`);
    token = page.IsTruncated ? page.NextContinuationToken : undefined;
  } while (token);
  return out;
}

async function objectText(key: string): Promise<string> {
  const res = await bucket.client.send(new GetObjectCommand({ Bucket: bucket.bucket, Key: key }));
  return res.Body!.transformToString();
}

const configured = async () =>
  (await api.call<Array<{ name: string }>>('GET', '/config/datastore')).map((d) => d.name).sort();

test('creating an S3 datastore checks the bucket, refuses what PBS 4 refuses, and writes the in-use marker', async () => {
  const refusals: Array<[Record<string, unknown>, RegExp]> = [
    [
      { backend: 'type=s3,client=nope,bucket=x' },
      /'backend': datastore 'refused' uses S3 endpoint 'nope', which is not configured/,
    ],
    [
      { backend: backendOf('no-such-bucket-here') },
      /'backend': failed to access bucket - S3 request failed: HEAD no-such-bucket-here - HTTP 404/,
    ],
    [{ backend: 'type=s3,client=rgw' }, /'backend': .*missing option bucket/],
    [{ backend: 'type=tape' }, /'backend': datastore backend type 'tape' is not supported/],
    [{ backend: backendOf(bucket.bucket, ',max-cache-size=lots') }, /byte-size parse error for 'lots'/],
  ];
  for (const [params, message] of refusals) {
    await assert.rejects(
      api.call('POST', '/config/datastore', { name: 'refused', path: join(srv.root, 'refused'), ...params }),
      { code: 'BAD_REQUEST', message },
    );
  }
  assert.equal(existsSync(join(srv.root, 'refused')), false);
  assert.deepEqual(await configured(), ['local']);

  await createStore('s3a');
  assert.deepEqual(await snapshotsOf(api, 's3a'), []);
  assert.deepEqual(JSON.parse(await objectText('s3a/.in-use')), { hostname: hostname() });
  const cfg = await api.call<Record<string, unknown>>('GET', '/config/datastore/s3a');
  assert.equal(cfg.backend, backendOf(bucket.bucket));

  // a store another host uses is refused unless the operator says to take it over
  await bucket.client.send(
    new PutObjectCommand({
      Bucket: bucket.bucket,
      Key: 's3b/.in-use',
      Body: JSON.stringify({ hostname: 'pbs-elsewhere' }),
    }),
  );
  await assert.rejects(
    api.call('POST', '/config/datastore', {
      name: 's3b',
      path: join(srv.root, 'cache-s3b'),
      backend: backendOf(bucket.bucket),
    }),
    {
      code: 'BAD_REQUEST',
      message:
        "parameter verification failed - 'overwrite-in-use': Bucket already contains datastore 's3b' in use by host pbs-elsewhere",
    },
  );
  assert.equal(existsSync(join(srv.root, 'cache-s3b')), false);
  await createStore('s3b', { 'overwrite-in-use': true });
  assert.deepEqual(JSON.parse(await objectText('s3b/.in-use')), { hostname: hostname() });

  // removing it keeps the data but frees the bucket for another server (PBS 4); destroy-data is refused
  await assert.rejects(api.call('DELETE', '/config/datastore/s3b', { 'destroy-data': true }), {
    code: 'BAD_REQUEST',
    message: /'destroy-data': datastore 's3b' keeps its data in an S3 bucket/,
  });
  const removed = await taskEnd(api, await api.call<string>('DELETE', '/config/datastore/s3b'));
  assert.equal(removed.status, 'OK', removed.log.join('\n'));
  assert.equal((await keysUnder('s3b/')).size, 0);
});

test('stowage-client backs up to the S3 datastore and restores byte for byte; chunks and snapshot files are in the bucket in PBS 4 layout', async () => {
  image = join(srv.root, 'disk.img');
  writeFileSync(image, Buffer.concat([randomBytes(3 << 20), Buffer.alloc(1 << 20)]));
  await backup(srv, 's3a', 'web01', T1);

  const chunkKeys = [...(await keysUnder('s3a/.chunks/')).keys()];
  assert.ok(chunkKeys.length > 0);
  for (const key of chunkKeys) assert.match(key, /^s3a\/\.chunks\/([0-9a-f]{4})\/\1[0-9a-f]{60}$/);
  // the snapshot's files, its manifest and the group's owner, under .cnt/ (PBS 4 `S3_CONTENT_PREFIX`)
  const snap = `host/web01/${new Date(T1 * 1000).toISOString().replace('.000Z', 'Z')}`;
  const content = [...(await keysUnder('s3a/.cnt/')).keys()].sort();
  assert.deepEqual(
    content,
    [
      's3a/.cnt/host/web01/owner',
      ...['disk.img.fidx', 'index.json.blob', 'root.tar.didx'].map((f) => `s3a/.cnt/${snap}/${f}`),
    ].sort(),
  );
  assert.equal(await objectText('s3a/.cnt/host/web01/owner'), 'root@pam\n');
  assert.deepEqual(
    (await snapshotsOf(api, 's3a')).map((l) => l.split(': ')[1]),
    ['disk.img.fidx index.json.blob root.tar.didx'],
  );

  const dst = join(srv.root, 'restored');
  const r1 = await runClient(['restore', 'host/web01', 'root.tar', dst], repo(srv, 's3a'));
  assert.equal(r1.code, 0, r1.stderr);
  assert.deepEqual(describeTree(dst, { rootMeta: true }), describeTree(src, { rootMeta: true }));
  const img = join(srv.root, 'restored.img');
  const r2 = await runClient(['restore', 'host/web01', 'disk.img', img], repo(srv, 's3a'));
  assert.equal(r2.code, 0, r2.stderr);
  assert.equal(sha(img), sha(image));
});

type S3Statistics = Record<'downloaded' | 'uploaded' | 'get' | 'post' | 'put' | 'head' | 'delete', number>;

async function s3Statistics(client: ApiClient, store: string): Promise<S3Statistics> {
  const status = await client.call<{ 'backend-type': string; 's3-statistics'?: S3Statistics }>(
    'GET',
    `/admin/datastore/${store}/status`,
  );
  assert.equal(status['backend-type'], 's3');
  assert.ok(status['s3-statistics'], JSON.stringify(status));
  return status['s3-statistics'];
}

test('a second backup of the same data uploads no chunk: its only PUTs are the snapshot files and the owner (status counters, PBS 4 names)', async () => {
  const chunksBefore = await keysUnder('s3a/.chunks/');
  const contentBefore = await keysUnder('s3a/.cnt/');
  const before = await s3Statistics(api, 's3a');
  assert.ok(before.put >= chunksBefore.size, JSON.stringify(before));
  await backup(srv, 's3a', 'web01', T1 + 3600);
  const after = await s3Statistics(api, 's3a');
  assert.deepEqual(await keysUnder('s3a/.chunks/'), chunksBefore);
  const newContent = [...(await keysUnder('s3a/.cnt/')).keys()].filter((k) => !contentBefore.has(k));
  assert.equal(newContent.length, 3, newContent.join(' '));
  // and the group's owner again, which goes with every snapshot
  assert.equal(after.put - before.put, newContent.length + 1, JSON.stringify({ before, after }));
  assert.equal((await snapshotsOf(api, 's3a')).length, 2);
  // a filesystem datastore says so, without S3 counters
  const local = await api.call<Record<string, unknown>>('GET', '/admin/datastore/local/status');
  assert.equal(local['backend-type'], 'filesystem');
  assert.equal(local['s3-statistics'], undefined);
});

test('a second server given the same bucket with reuse-datastore sees the same snapshots and restores them', async () => {
  const other = await startE2eServer('stowage-s3-e2e-second-');
  servers.push(other);
  const api2 = await loginApi(other);
  await api2.call('POST', '/config/s3', testEndpointConfig(await testS3Target(), 'rgw'));
  const create = (extra: Record<string, unknown>) =>
    api2.call<string>('POST', '/config/datastore', {
      name: 's3a',
      path: join(other.root, 'cache'),
      backend: backendOf(bucket.bucket),
      'reuse-datastore': true,
      ...extra,
    });
  // the first server still uses it: its marker says so
  await assert.rejects(create({}), {
    code: 'BAD_REQUEST',
    message: new RegExp(`in use by host ${hostname()}`),
  });
  const end = await taskEnd(api2, await create({ 'overwrite-in-use': true }));
  assert.equal(end.status, 'OK', end.log.join('\n'));
  assert.ok(
    end.log.some((l) => /fetched \d+ files/.test(l)),
    end.log.join('\n'),
  );

  assert.deepEqual(await snapshotsOf(api2, 's3a'), await snapshotsOf(api, 's3a'));
  const img = join(other.root, 'restored.img');
  const r = await runClient(['restore', 'host/web01', 'disk.img', img], repo(other, 's3a'));
  assert.equal(r.code, 0, r.stderr);
  assert.equal(sha(img), sha(image));
});

test('s3-refresh rebuilds a wiped cache from the bucket; reads and writes are refused with the message while it runs', async () => {
  const before = await snapshotsOf(api, 's3a');
  assert.equal(before.length, 2);
  rmSync(join(srv.root, 'cache-s3a', 'host'), { recursive: true, force: true });
  assert.deepEqual(await snapshotsOf(api, 's3a'), []);

  // a backup that runs on keeps the refresh waiting (PBS: it waits for the store to drain)
  const pool = new ChunkPool();
  const held = await BackupWriter.start(
    {
      target: { host: srv.host, port: srv.port },
      policy: { fingerprint: srv.fingerprint },
      credentials: api.credentials,
      store: 's3a',
      backupType: 'host',
      backupId: 'held',
      backupTime: T1,
    },
    pool,
  );
  try {
    const upid = await api.call<string>('PUT', '/admin/datastore/s3a/s3-refresh');
    const cfg = await api.call<Record<string, unknown>>('GET', '/config/datastore/s3a');
    assert.equal(cfg['maintenance-mode'], 's3-refresh');
    const refused = await runClient(
      ['backup', `root.tar:${src}`, '--backup-id', 'web02', '--backup-time', String(T1)],
      repo(srv, 's3a'),
    );
    assert.notEqual(refused.code, 0);
    assert.match(refused.stderr, /datastore 's3a' is unavailable: S3 refresh maintenance mode/);
    await assert.rejects(api.call('GET', '/admin/datastore/s3a/snapshots'), {
      message: "datastore 's3a' is unavailable: S3 refresh maintenance mode",
    });
    held.abort();
    const end = await taskEnd(api, upid);
    assert.equal(end.status, 'OK', end.log.join('\n'));
    assert.ok(
      end.log.some((l) =>
        /waiting for active operations to finish before continuing: read 0, write 1/.test(l),
      ),
      end.log.join('\n'),
    );
  } finally {
    held.abort();
    await pool.close();
  }
  assert.equal(
    (await api.call<Record<string, unknown>>('GET', '/config/datastore/s3a'))['maintenance-mode'],
    undefined,
  );
  assert.deepEqual(await snapshotsOf(api, 's3a'), before);
  // a filesystem datastore has no bucket to refresh from
  await assert.rejects(api.call('PUT', '/admin/datastore/local/s3-refresh'), {
    code: 'BAD_REQUEST',
    message: "store 'local' not backed by S3",
  });
});

test('verify reads the chunks from the bucket: a chunk corrupted there (its cached copy intact) fails the snapshot and is set aside', async () => {
  const chunkKeys = [...(await keysUnder('s3a/.chunks/')).keys()];
  const victim = chunkKeys[0]!;
  const cached = join(srv.root, 'cache-s3a', victim.slice('s3a/'.length));
  await bucket.client.send(new PutObjectCommand({ Bucket: bucket.bucket, Key: victim, Body: 'not a blob' }));
  const upid = await api.call<string>('POST', '/admin/datastore/s3a/verify', {
    'backup-type': 'host',
    'backup-id': 'web01',
    'backup-time': T1,
  });
  const end = await taskEnd(api, upid);
  const hex = victim.split('/').at(-1)!;
  assert.notEqual(end.status, 'OK', end.log.join('\n'));
  assert.ok(
    end.log.some((l) => l.includes(`can't verify chunk ${hex}`)),
    end.log.join('\n'),
  );
  const after = await keysUnder('s3a/.chunks/');
  assert.equal(after.has(victim), false);
  assert.equal(after.has(`${victim}.0.bad`), true);
  assert.equal(existsSync(cached), false, 'the cached copy goes with the chunk');
});

test('deleting a snapshot, and the last one of a group, removes their objects from the bucket', async () => {
  const time = (t: number) => new Date(t * 1000).toISOString().replace('.000Z', 'Z');
  await api.call('DELETE', '/admin/datastore/s3a/snapshots', {
    'backup-type': 'host',
    'backup-id': 'web01',
    'backup-time': T1,
  });
  let content = [...(await keysUnder('s3a/.cnt/')).keys()];
  assert.equal(
    content.some((k) => k.includes(time(T1))),
    false,
  );
  assert.equal(
    content.some((k) => k.includes(time(T1 + 3600))),
    true,
  );
  await api.call('DELETE', '/admin/datastore/s3a/snapshots', {
    'backup-type': 'host',
    'backup-id': 'web01',
    'backup-time': T1 + 3600,
  });
  content = [...(await keysUnder('s3a/.cnt/')).keys()];
  assert.deepEqual(content, []);
});

/** Set every file's atime and mtime under `dir` to `ageMs` ago (GC's marks live in the cache). */
function ageTree(dir: string, ageMs: number): void {
  const at = (Date.now() - ageMs) / 1000;
  for (const entry of readdirSync(dir, { withFileTypes: true, recursive: true })) {
    if (entry.isFile()) utimesSync(join(entry.parentPath, entry.name), at, at);
  }
}

test('GC removes exactly the chunks no snapshot references from the bucket, set-aside copies included', async () => {
  const before = new Set((await keysUnder('s3a/.chunks/')).keys());
  assert.ok([...before].some((k) => k.endsWith('.0.bad')));
  const fresh = join(srv.root, 'fresh');
  mkdirSync(fresh);
  writeFileSync(join(fresh, 'new.bin'), randomBytes(3 << 20));
  const res = await runClient(
    ['backup', `root.tar:${fresh}`, '--backup-id', 'keep', '--backup-time', String(T1)],
    repo(srv, 's3a'),
  );
  assert.equal(res.code, 0, res.stderr);
  const referenced = [...(await keysUnder('s3a/.chunks/')).keys()].filter((k) => !before.has(k));
  assert.ok(referenced.length > 0);
  // everything marked two days ago: older than GC's cutoff of 24 h 5 min
  ageTree(join(srv.root, 'cache-s3a', '.chunks'), 2 * 86400_000);
  const end = await taskEnd(api, await api.call<string>('POST', '/admin/datastore/s3a/gc'));
  assert.equal(end.status, 'OK', end.log.join('\n'));
  assert.deepEqual([...(await keysUnder('s3a/.chunks/')).keys()].sort(), referenced.sort());
  const restored = join(srv.root, 'fresh-restored');
  const r = await runClient(['restore', 'host/keep', 'root.tar', restored], repo(srv, 's3a'));
  assert.equal(r.code, 0, r.stderr);
  assert.equal(sha(join(restored, 'new.bin')), sha(join(fresh, 'new.bin')));
});

test('radosgw stopped mid-backup: the client gets the S3 error, no snapshot is left anywhere, other datastores work; after it is back the next backup succeeds', async (t) => {
  const target = await testS3Target();
  // a gateway of this test's own on the shared cluster: the shared one serves the other files
  const gateway = await startTestGateway(target);
  if (!gateway) return t.skip('the S3 store is not the test cluster: no gateway of our own to stop');
  try {
    await api.call('POST', '/config/s3', {
      ...testEndpointConfig(target, 'gw2'),
      port: gateway.httpsPort,
      // uploads at 8 MiB/s at most, so the backup is still uploading when the gateway goes
      'rate-out': '8MiB',
    });
    const upid = await api.call<string>('POST', '/config/datastore', {
      name: 's3r',
      path: join(srv.root, 'cache-s3r'),
      backend: `type=s3,client=gw2,bucket=${bucket.bucket}`,
    });
    assert.equal((await taskEnd(api, upid)).status, 'OK');
    const big = join(srv.root, 'big');
    mkdirSync(big);
    writeFileSync(join(big, 'data.bin'), randomBytes(24 << 20));
    const args = (time: number) => [
      'backup',
      `data.tar:${big}`,
      '--backup-id',
      'big',
      '--backup-time',
      String(time),
    ];

    const running = runClient(args(T1), repo(srv, 's3r'));
    // the first chunks are in the bucket: stop the gateway process mid-backup
    while ((await s3Statistics(api, 's3r')).put < 1) await new Promise((r) => setTimeout(r, 50));
    await gateway.stop();
    const failed = await running;
    assert.notEqual(failed.code, 0);
    const lastLine = failed.stderr.trim().split('\n').at(-1)!;
    assert.match(
      lastLine,
      /S3 request failed: (PUT|HEAD) [^ ]+\/s3r\/\.chunks\/[0-9a-f]{4}\/[0-9a-f]{64} - /,
      failed.stderr,
    );
    // no snapshot: neither listed by the server nor in the bucket
    assert.deepEqual(await snapshotsOf(api, 's3r'), []);
    assert.deepEqual([...(await keysUnder('s3r/.cnt/')).keys()], []);
    // the status still answers (from the cache), and the local datastore takes backups meanwhile
    await s3Statistics(api, 's3r');
    await backup(srv, 'local', 'during-outage', T1);
    // the datastore shows its endpoint's failure, in the list and beside its operations; the
    // other datastores show none
    const endpointError = /^object store endpoint 'gw2' failing since \d{4}-\d\d-\d\dT[^ ]+Z: .+/;
    const listed = await api.call<Array<{ store: string; 's3-endpoint-error'?: string }>>(
      'GET',
      '/admin/datastore',
    );
    assert.match(listed.find((s) => s.store === 's3r')?.['s3-endpoint-error'] ?? '', endpointError);
    assert.ok(listed.filter((s) => s.store !== 's3r').every((s) => s['s3-endpoint-error'] === undefined));
    const ops = await api.call<{ 's3-endpoint-error'?: string }>(
      'GET',
      '/admin/datastore/s3r/active-operations',
    );
    assert.match(ops['s3-endpoint-error'] ?? '', endpointError);

    await gateway.start();
    const ok = await runClient(args(T1 + 60), repo(srv, 's3r'));
    assert.equal(ok.code, 0, ok.stderr);
    const after = await api.call<{ 's3-endpoint-error'?: string }>(
      'GET',
      '/admin/datastore/s3r/active-operations',
    );
    assert.equal(after['s3-endpoint-error'], undefined, 'answered requests clear the failure');
    assert.equal((await snapshotsOf(api, 's3r')).length, 1);
    assert.ok((await keysUnder('s3r/.cnt/host/big/')).size > 0);
  } finally {
    await gateway.stop();
  }
});

test('offline on an S3 datastore releases its cache as on a local one: backups are refused with the message, the server holds no file there, the bucket is kept', async () => {
  const cache = join(srv.root, 'cache-s3a');
  const objects = await keysUnder('s3a/');
  await api.call('PUT', '/config/datastore/s3a', {
    'maintenance-mode': 'type=offline,message=moving the cache',
  });
  try {
    const refused = await runClient(
      ['backup', `root.tar:${src}`, '--backup-id', 'offline', '--backup-time', String(T1)],
      repo(srv, 's3a'),
    );
    assert.notEqual(refused.code, 0);
    assert.match(
      refused.stderr,
      /datastore 's3a' is unavailable: offline maintenance mode: moving the cache/,
    );
    // nothing was running: the mode is drained at once, and no file of the cache is open
    assert.deepEqual(openFilesUnder(srv.proc.pid!, cache), []);
    assert.deepEqual(await keysUnder('s3a/'), objects);
  } finally {
    await api.call('PUT', '/config/datastore/s3a', { delete: ['maintenance-mode'] });
  }
  assert.ok((await snapshotsOf(api, 's3a')).length > 0, 'readable again once the mode is cleared');
});

test('GC while a backup runs removes exactly the chunks no snapshot references, and none of those the backup writes', async () => {
  const target = await testS3Target();
  // uploads at 4 MiB/s: the backup is still writing while GC runs
  await api.call('POST', '/config/s3', { ...testEndpointConfig(target, 'slow'), 'rate-out': '4MiB' });
  const created = await api.call<string>('POST', '/config/datastore', {
    name: 's3g',
    path: join(srv.root, 'cache-s3g'),
    backend: `type=s3,client=slow,bucket=${bucket.bucket}`,
  });
  assert.equal((await taskEnd(api, created)).status, 'OK');
  const dir = (name: string, files: Record<string, Buffer>) => {
    const path = join(srv.root, name);
    mkdirSync(path);
    for (const [file, bytes] of Object.entries(files)) writeFileSync(join(path, file), bytes);
    return path;
  };
  const reused = randomBytes(3 << 20);
  const backupOf = (path: string, id: string) =>
    runClient(
      ['backup', `root.tar:${path}`, '--backup-id', id, '--backup-time', String(T1)],
      repo(srv, 's3g'),
    );
  // two snapshots whose chunks become garbage once deleted; the new backup reuses one's file
  for (const [id, files] of [
    ['old-a', { 'a.bin': reused }],
    ['old-b', { 'b.bin': randomBytes(2 << 20) }],
  ] as const) {
    assert.equal((await backupOf(dir(`gc-${id}`, files), id)).code, 0);
    await api.call('DELETE', '/admin/datastore/s3g/snapshots', {
      'backup-type': 'host',
      'backup-id': id,
      'backup-time': T1,
    });
  }
  ageTree(join(srv.root, 'cache-s3g', '.chunks'), 2 * 86400_000);

  // the new file first in the archive: the old file's chunks come while GC sweeps, or after
  const putsBefore = (await s3Statistics(api, 's3g')).put;
  let backupEnded = false;
  const running = backupOf(
    dir('gc-new', { '0-new.bin': randomBytes(12 << 20), 'a.bin': reused }),
    'new',
  ).then((r) => ((backupEnded = true), r));
  while ((await s3Statistics(api, 's3g')).put === putsBefore) await new Promise((r) => setTimeout(r, 50));
  const gc = await api.call<string>('POST', '/admin/datastore/s3g/gc');
  assert.equal(backupEnded, false, 'GC started while the backup ran');
  const gcEnd = await taskEnd(api, gc);
  assert.equal(gcEnd.status, 'OK', gcEnd.log.join('\n'));
  const done = await running;
  assert.equal(done.code, 0, done.stderr);

  // the bucket holds exactly the new snapshot's chunks, and they verify from the bucket
  const snapDir = join(srv.root, 'cache-s3g', 'host', 'new');
  const index = openIndexReader(join(snapDir, readdirSync(snapDir)[0]!, 'root.tar.didx'));
  const referenced = new Set(Array.from({ length: index.count }, (_, i) => index.digest(i).toString('hex')));
  const stored = [...(await keysUnder('s3g/.chunks/')).keys()].map((k) => k.split('/').at(-1)!);
  assert.deepEqual(stored.sort(), [...referenced].sort());
  const verified = await taskEnd(
    api,
    await api.call<string>('POST', '/admin/datastore/s3g/verify', {
      'backup-type': 'host',
      'backup-id': 'new',
      'backup-time': T1,
    }),
  );
  assert.equal(verified.status, 'OK', verified.log.join('\n'));
});
