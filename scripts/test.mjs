// `npm test`: set up (install, build), then run every test under test/ with node's test runner.
// Extra arguments narrow the run to matching files: `npm test -- chunk-store`.
// Files under test/s3/ need a real object store: one Ceph cluster is started for the whole run
// (test/helpers/ceph-cluster.ts) and passed on in STOWAGE_TEST_S3_*. Files under test/cluster/
// need etcd: one 3-member cluster (test/helpers/etcd-cluster.ts), passed on in STOWAGE_TEST_ETCD_*.
import { spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { createInterface } from 'node:readline';
import { readdirSync } from 'node:fs';
import { join, relative } from 'node:path';
import { ensureBuilt, root } from './ensure-built.mjs';

ensureBuilt();

function collect(dir) {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = join(dir, e.name);
    if (e.isDirectory()) return collect(p);
    return e.name.endsWith('.test.ts') ? [p] : [];
  });
}

const filters = process.argv.slice(2);
const files = collect(join(root, 'test'))
  .map((f) => relative(root, f))
  .filter((f) => filters.length === 0 || filters.some((x) => f.includes(x)))
  .sort();
if (files.length === 0) {
  console.error('no test files matched');
  process.exit(1);
}
/**
 * Start a shared service helper (`node --import tsx HELPER --serve`), which prints one JSON line
 * (or `{"error": ...}`) once the service is up; returns that line and how to stop the service.
 */
async function startService(what, helper) {
  const t0 = Date.now();
  const child = spawn(process.execPath, ['--import', 'tsx', helper, '--serve'], {
    cwd: root,
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  const rl = createInterface({ input: child.stdout });
  const line = await new Promise((resolve) => {
    rl.once('line', resolve);
    rl.once('close', () => resolve(JSON.stringify({ error: `${what}: the helper exited without a word` })));
  });
  const target = JSON.parse(line);
  if (target.error) {
    console.error(target.error);
    process.exit(1);
  }
  const seconds = ((Date.now() - t0) / 1000).toFixed(1);
  // closing its stdin stops the daemons and removes the temp dir
  const stop = async () => {
    child.stdin.end();
    if (child.exitCode === null) await once(child, 'exit');
  };
  return { target, seconds, stop };
}

/** Start the shared Ceph cluster; returns its env for the test processes and how to stop it. */
async function startCeph() {
  const { target, seconds, stop } = await startService('ceph', 'test/helpers/ceph-cluster.ts');
  console.log(`ceph: test cluster up in ${seconds} s at ${target.endpoint} (logs in ${target.dir})`);
  const env = {
    STOWAGE_TEST_S3_ENDPOINT: target.endpoint,
    STOWAGE_TEST_S3_ACCESS_KEY: target.accessKey,
    STOWAGE_TEST_S3_SECRET_KEY: target.secretKey,
    STOWAGE_TEST_S3_HTTPS_PORT: String(target.httpsPort),
    STOWAGE_TEST_S3_FINGERPRINT: target.fingerprint,
    STOWAGE_TEST_S3_CEPH_DIR: target.dir,
  };
  return { env, stop };
}

/** Start the shared 3-member etcd cluster; returns its env for the test processes and how to stop it. */
async function startEtcd() {
  const { target, seconds, stop } = await startService('etcd', 'test/helpers/etcd-cluster.ts');
  console.log(
    `etcd: 3-member test cluster up in ${seconds} s at ${target.endpoints.join(', ')} (logs in ${target.dir})`,
  );
  const env = {
    STOWAGE_TEST_ETCD_ENDPOINTS: target.endpoints.join(','),
    STOWAGE_TEST_ETCD_CONTROL: target.control,
  };
  return { env, stop };
}

const under = (folder) => files.some((f) => f.split(/[\\/]/).includes(folder));
const [ceph, etcd] = await Promise.all([
  under('s3') ? startCeph() : undefined,
  under('cluster') ? startEtcd() : undefined,
]);
const res = spawnSync(
  process.execPath,
  [
    '--import',
    'tsx',
    '--test',
    '--test-concurrency=2',
    '--test-timeout=600000',
    '--test-reporter=spec',
    ...files,
  ],
  { cwd: root, stdio: 'inherit', env: { ...process.env, ...ceph?.env, ...etcd?.env, STOWAGE_TEST: '1' } },
);
await Promise.all([ceph?.stop(), etcd?.stop()]);
process.exit(res.status ?? 1);
