/**
 * A datastore.cfg written by PBS 4 (test/config/fixtures/pbs4-datastore.cfg, paths moved into the
 * temp dir) over real HTTPS: the plain stores work, the removable ones (whose devices are not
 * attached here) and the S3 ones (whose endpoint is not configured here) are listed but every
 * read and write is refused with a message naming why, the unmount and s3-refresh modes
 * refuse as PBS 4 does, and none of it writes a byte under those datastores.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { existsSync, lstatSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { runSchedulerOnce } from '../../src/jobs/scheduler.js';
import { listTree, openFilesUnder } from '../helpers/files.js';
import { startTestServer, waitForTask, type ApiReply, type TestServer } from '../helpers/https-api.js';
import { writeSnapshots } from '../helpers/snapshot-fixture.js';

const FIXTURE = readFileSync(
  fileURLToPath(new URL('../config/fixtures/pbs4-datastore.cfg', import.meta.url)),
  'utf8',
);
const T1 = 1717236000; // 2024-06-01T10:00:00Z

/** Its device is not attached here, so it is never mounted (test/e2e/removable-datastore-api.test.ts mounts real ones). */
const USB1 = "datastore 'usb1' is not mounted";
/** Its endpoint is not in s3.cfg here (test/s3/s3-datastore-e2e.test.ts serves real S3 stores). */
const S3 = "datastore 's3store' uses S3 endpoint 'aws-s3', which is not configured (config/s3)";

/** Plain stores get a bare chunk store; the S3 stores' local caches get some content. */
const PLAIN = [
  'backup',
  'localfs',
  'readonly',
  'offline',
  'offline-old',
  'unmounting',
  'refreshing',
  'deleting',
];
const S3_CACHES = ['s3store-local-cache', 's3refresh-cache'];
/** Directories nothing may write to: everything but the stores the test reads or writes. */
const UNTOUCHABLE = [...S3_CACHES, 'offline', 'offline-old', 'unmounting', 'refreshing', 'deleting'];

let t: TestServer;
let storesDir: string;
let cfgText: string;

before(async () => {
  t = await startTestServer({ prefix: 'stowage-e2e-pbs4-' });
  storesDir = join(t.dir, 'stores');
  for (const name of PLAIN) {
    mkdirSync(join(storesDir, name, '.chunks', '0000'), { recursive: true });
    writeFileSync(join(storesDir, name, '.lock'), '');
  }
  for (const name of S3_CACHES) {
    const snap = join(storesDir, name, 'host', 'web01', '2024-06-01T10:00:00Z');
    mkdirSync(snap, { recursive: true });
    mkdirSync(join(storesDir, name, '.chunks', '0000'), { recursive: true });
    writeFileSync(join(storesDir, name, '.lock'), '');
    writeFileSync(join(snap, 'index.json.blob'), 'cached manifest');
    writeFileSync(join(storesDir, name, 'host', 'web01', 'owner'), 'root@pam\n');
  }
  cfgText = FIXTURE.replaceAll('/mnt/datastore/', `${storesDir}/`);
  writeFileSync(join(t.paths.configDir, 'datastore.cfg'), cfgText);
  await writeSnapshots(t.server.context.datastores, 'backup', [{ type: 'vm', id: '100', time: T1 }]);
});

after(async () => {
  await t?.close();
});

/** Every entry below the untouchable directories with its type, size, mtime and content hash. */
function untouchableState(): string[] {
  const out: string[] = [];
  for (const name of UNTOUCHABLE) {
    const root = join(storesDir, name);
    for (const rel of ['', ...listTree(root)]) {
      const p = join(root, rel);
      const st = lstatSync(p);
      const hash = st.isFile() ? createHash('sha256').update(readFileSync(p)).digest('hex') : '-';
      out.push(`${name}/${rel} ${st.isDirectory() ? 'd' : 'f'} ${st.size} ${st.mtimeMs} ${hash}`);
    }
  }
  return out;
}

/** Where a removable store's relative path would land if anything resolved it. */
const STRAY = [
  join(process.cwd(), 'pbs'),
  join(process.cwd(), 'usb2'),
  '/mnt/datastore/usb1',
  '/mnt/datastore/usb2',
];

const get = (path: string) => t.api('GET', path, { auth: t.root });
const readProbe = (store: string) => get(`/admin/datastore/${store}/groups`);
const writeProbe = (store: string) => t.api('POST', `/admin/datastore/${store}/gc`, { auth: t.root });

function assertRefused(r: ApiReply, status: number, code: string, message: string, label: string): void {
  assert.deepEqual(
    [r.status, r.body.code, r.body.message, r.body.data],
    [status, code, message, null],
    label,
  );
}

let before_: string[];
let strayBefore: boolean[];

test('the PBS 4 file loads: the datastore list has every store with mount-status and backend-type', async () => {
  before_ = untouchableState();
  strayBefore = STRAY.map((p) => existsSync(p));
  const list = await get('/admin/datastore');
  assert.equal(list.status, 200, JSON.stringify(list.body));
  const items = Object.fromEntries(
    (list.body.data as Array<Record<string, unknown>>).map((i) => [i.store as string, i]),
  );
  assert.equal(Object.keys(items).length, 12);
  const plain = { 'mount-status': 'nonremovable', 'backend-type': 'filesystem' };
  assert.deepEqual(items.backup, { store: 'backup', comment: 'Main datastore', ...plain });
  assert.deepEqual(items.usb1, {
    store: 'usb1',
    comment: 'Offsite USB disk',
    'mount-status': 'notmounted',
    'backend-type': 'filesystem',
  });
  assert.deepEqual(items.s3store, { store: 's3store', 'mount-status': 'nonremovable', 'backend-type': 's3' });
  assert.deepEqual(items.localfs, { store: 'localfs', ...plain });
  assert.deepEqual(items.usb2, {
    store: 'usb2',
    'mount-status': 'notmounted',
    maintenance: 'unmount',
    'backend-type': 'filesystem',
  });
  assert.deepEqual(items.s3refresh, {
    store: 's3refresh',
    'mount-status': 'nonremovable',
    maintenance: 's3-refresh',
    'backend-type': 's3',
  });
  assert.deepEqual(items['offline-old'], {
    store: 'offline-old',
    ...plain,
    maintenance: 'type=offline,message="fsck, back at 10"',
  });

  const cfgs = await get('/config/datastore');
  assert.equal(cfgs.status, 200);
  const byName = Object.fromEntries(
    (cfgs.body.data as Array<Record<string, unknown>>).map((c) => [c.name as string, c]),
  );
  assert.deepEqual(byName.usb1, {
    name: 'usb1',
    path: 'pbs/usb1',
    'backing-device': '5c7d2f1e-3a9b-4c6d-8e0f-1a2b3c4d5e6f',
    comment: 'Offsite USB disk',
    'gc-schedule': 'daily',
    'gc-on-unmount': true,
  });
  assert.deepEqual(byName.s3store, {
    name: 's3store',
    path: `${storesDir}/s3store-local-cache`,
    backend: 'bucket=pbs-s3-bucket,client=aws-s3,type=s3',
    'gc-schedule': 'daily',
    'counter-reset-schedule': 'monthly',
    'notification-thresholds': 's3-get=100000,s3-put=50000',
  });
  const one = await get('/config/datastore/usb1');
  assert.equal(one.status, 200);
  assert.equal(one.body.digest, createHash('sha256').update(cfgText).digest('hex'));
});

test('the plain stores work: list groups, run GC, read and write a store with backend type=filesystem', async () => {
  const groups = await readProbe('backup');
  assert.equal(groups.status, 200, JSON.stringify(groups.body));
  assert.deepEqual(
    (groups.body.data as Array<Record<string, unknown>>).map((g) => `${g['backup-type']}/${g['backup-id']}`),
    ['vm/100'],
  );
  const gc = await writeProbe('backup');
  assert.equal(gc.status, 200, JSON.stringify(gc.body));
  assert.equal(await waitForTask(t, gc.body.data as string), 'OK');
  assert.equal((await readProbe('localfs')).status, 200);
  const gc2 = await writeProbe('localfs');
  assert.equal(gc2.status, 200);
  assert.equal(await waitForTask(t, gc2.body.data as string), 'OK');
  // read-only admits reads only
  assert.equal((await readProbe('readonly')).status, 200);
  assertRefused(
    await writeProbe('readonly'),
    503,
    'MAINTENANCE',
    "datastore 'readonly' is unavailable: read-only maintenance mode: disk swap",
    'write on readonly',
  );
});

test('an unmounted removable store and S3 stores are refused for read and write with a 400 naming why', async () => {
  for (const [store, code, message] of [
    ['usb1', 'NOT_MOUNTED', USB1],
    ['s3store', 'UNSUPPORTED', S3],
  ] as const) {
    assertRefused(await readProbe(store), 400, code, message, `groups of ${store}`);
    assertRefused(await get(`/admin/datastore/${store}/status`), 400, code, message, `status of ${store}`);
    assertRefused(await writeProbe(store), 400, code, message, `gc of ${store}`);
    assertRefused(
      await t.api('POST', `/admin/datastore/${store}/verify`, { auth: t.root, body: {} }),
      400,
      code,
      message,
      `verify of ${store}`,
    );
    assertRefused(
      await t.api('POST', `/admin/datastore/${store}/prune-datastore`, {
        auth: t.root,
        body: { 'dry-run': true },
      }),
      400,
      code,
      message,
      `prune of ${store}`,
    );
    // no admission at all: works, as for every maintenance mode
    const ops = await get(`/admin/datastore/${store}/active-operations`);
    assert.equal(ops.status, 200);
    assert.deepEqual(
      [ops.body.data].map((d) => d as { read: number; write: number }).map((d) => [d.read, d.write]),
      [[0, 0]],
    );
  }
  // usage and the GC list show them with the refusal instead of failing
  const usage = await get('/status/datastore-usage');
  assert.equal(usage.status, 200);
  const errors = Object.fromEntries(
    (usage.body.data as Array<{ store: string; error?: string }>).map((u) => [u.store, u.error]),
  );
  assert.equal(errors.usb1, USB1);
  assert.equal(errors.s3store, S3);
  assert.equal(errors.backup, undefined);
  const gcList = await get('/admin/gc');
  assert.equal(gcList.status, 200, JSON.stringify(gcList.body));
  const gcStores = (gcList.body.data as Array<{ store: string; schedule?: string }>)
    .filter((g) => ['usb1', 's3store'].includes(g.store))
    .map(({ store, schedule }) => ({ store, schedule }));
  assert.deepEqual(gcStores, [
    { store: 'usb1', schedule: 'daily' },
    { store: 's3store', schedule: 'daily' },
  ]);
});

test('unmount and s3-refresh refuse read and write with PBS 4 messages (before the unsupported feature) and allow lookups', async () => {
  const cases: Array<[string, string]> = [
    ['unmounting', "datastore 'unmounting' is unavailable: datastore is being unmounted"],
    ['usb2', "datastore 'usb2' is unavailable: datastore is being unmounted"],
    ['refreshing', "datastore 'refreshing' is unavailable: S3 refresh maintenance mode: resync from bucket"],
    ['s3refresh', "datastore 's3refresh' is unavailable: S3 refresh maintenance mode"],
    ['offline-old', "datastore 'offline-old' is unavailable: offline maintenance mode: fsck, back at 10"],
    ['offline', "datastore 'offline' is unavailable: offline maintenance mode"],
    ['deleting', "datastore 'deleting' is unavailable: datastore is being deleted"],
  ];
  const access = t.server.context.datastores;
  for (const [store, message] of cases) {
    assertRefused(await readProbe(store), 503, 'MAINTENANCE', message, `read of ${store}`);
    assertRefused(await writeProbe(store), 503, 'MAINTENANCE', message, `write of ${store}`);
    const ops = await get(`/admin/datastore/${store}/active-operations`);
    assert.equal(ops.status, 200, `active-operations of ${store}`);
    if (store === 'deleting') {
      await assert.rejects(access.lookupDatastore(store, 'lookup', { kind: 'test' }), { message });
    } else {
      const h = await access.lookupDatastore(store, 'lookup', { kind: 'test' });
      await h.release();
    }
  }
  // removable and S3 stores admit lookups too (they touch no disk)
  for (const store of ['usb1', 's3store']) {
    const h = await access.lookupDatastore(store, 'lookup', { kind: 'test' });
    await h.release();
  }
  assert.deepEqual(access.openDatastores().sort(), []);
});

test('scheduled GC on a removable or S3 store is recorded as skipped with the reason, a sync into it fails; the plain store runs', async () => {
  const ctx = t.server.context;
  // a local sync into the unmounted removable store fails loudly instead, as in PBS
  const sync = await t.api('POST', '/config/sync', {
    auth: t.root,
    body: { id: 'to-usb1', store: 'usb1', 'remote-store': 'backup', schedule: 'daily' },
  });
  assert.equal(sync.status, 200, JSON.stringify(sync.body));
  const now = new Date();
  await runSchedulerOnce(ctx, now); // a first sight creates the job state
  const runs = await runSchedulerOnce(ctx, new Date(now.getTime() + 3 * 86400_000));
  const outcome = Object.fromEntries(runs.map((r) => [r.id, r]));
  assert.equal(outcome['to-usb1']?.outcome, 'failed');
  assert.equal(await waitForTask(t, outcome['to-usb1']!.upid), USB1);
  assert.equal((await t.api('DELETE', '/config/sync/to-usb1', { auth: t.root })).status, 200);
  assert.equal(outcome.usb1?.outcome, 'skipped');
  assert.equal(outcome.s3store?.outcome, 'skipped');
  assert.equal(outcome.backup?.outcome, 'started');
  assert.equal(await waitForTask(t, outcome.usb1!.upid), `skipped: not mounted: ${USB1}`);
  assert.equal(await waitForTask(t, outcome.s3store!.upid), `skipped: unsupported: ${S3}`);
  assert.equal(await waitForTask(t, outcome.backup!.upid), 'OK');
  const gc = await get('/admin/gc/usb1');
  assertRefused(gc, 400, 'NOT_MOUNTED', USB1, 'gc status of usb1');
  const list = (await get('/admin/gc')).body.data as Array<Record<string, unknown>>;
  assert.equal(list.find((g) => g.store === 'usb1')?.['last-run-state'], `skipped: not mounted: ${USB1}`);
});

test('config changes on them touch only datastore.cfg; transitions follow PBS 4', async () => {
  const put = (store: string, body: Record<string, unknown>) =>
    t.api('PUT', `/config/datastore/${store}`, { auth: t.root, body });
  assert.equal((await put('s3store', { 'maintenance-mode': 'read-only,message="window"' })).status, 200);
  assertRefused(
    await readProbe('s3store'),
    400,
    'UNSUPPORTED',
    S3,
    'read-only admits the read; the S3 refusal follows',
  );
  assertRefused(
    await writeProbe('s3store'),
    503,
    'MAINTENANCE',
    "datastore 's3store' is unavailable: read-only maintenance mode: window",
    'the mode comes first, as PBS checks it before the mount',
  );
  assert.equal((await put('s3store', { delete: 'maintenance-mode' })).status, 200);
  // unmount may be left to anything and set by hand, as PBS 4's update_datastore allows
  assert.equal((await put('usb2', { 'maintenance-mode': 'offline' })).status, 200);
  assert.equal((await put('usb2', { 'maintenance-mode': 'unmount' })).status, 200);
  assert.equal((await put('refreshing', { 'maintenance-mode': 'offline' })).status, 200);
  assert.equal(
    (await put('refreshing', { 'maintenance-mode': 's3-refresh,message="resync from bucket"' })).status,
    200,
  );
  const del = await put('deleting', { delete: 'maintenance-mode' });
  assert.equal(del.status, 409);
  assert.match(del.body.message!, /is being deleted/);
  // the file is back to what PBS wrote, byte for byte (the quoted message is how Stowage writes it)
  assert.equal(
    readFileSync(join(t.paths.configDir, 'datastore.cfg'), 'utf8'),
    cfgText.replace('s3-refresh,message=resync from bucket', 's3-refresh,message="resync from bucket"'),
  );
  // destroying the data of an S3 store, or of a removable one not mounted (PBS's wording), is
  // refused before anything starts
  for (const [store, code, message] of [
    [
      's3store',
      'BAD_REQUEST',
      "parameter verification failed - 'destroy-data': datastore 's3store' keeps its data in an S3 bucket; this Stowage version does not delete bucket objects (remove the datastore without destroy-data, then the objects under 's3store/' with the store's tools)",
    ],
    ['usb1', 'BAD_REQUEST', "cannot destroy data on 'usb1' unless the datastore is mounted"],
  ] as const) {
    const r = await t.api('DELETE', `/config/datastore/${store}?destroy-data=true`, { auth: t.root });
    assertRefused(r, 400, code, message, `destroy-data of ${store}`);
  }
});

test('creating an S3 datastore on an endpoint not configured, or a removable one with a bad device or path, is refused naming the parameter, and nothing is created', async () => {
  const path = join(storesDir, 'new-store');
  const cases: Array<[Record<string, unknown>, RegExp]> = [
    [
      { 'backing-device': '/dev/sdb1', path: 'new-store' },
      /^parameter verification failed - 'backing-device': value '\/dev\/sdb1' does not match the UUID format/,
    ],
    [
      { 'backing-device': '5c7d2f1e-3a9b-4c6d-8e0f-1a2b3c4d5e6f', path: '/new-store' },
      /^parameter verification failed - 'path': expected a relative on-device path, '\/new-store' is not/,
    ],
    [
      { 'backing-device': '5c7d2f1e-3a9b-4c6d-8e0f-1a2b3c4d5e6f', path: '../new-store' },
      /^parameter verification failed - 'path': expected a relative on-device path/,
    ],
    [
      { backend: 'type=s3,client=aws-s3,bucket=b', path },
      /^parameter verification failed - 'backend': datastore 'newstore' uses S3 endpoint 'aws-s3', which is not configured/,
    ],
    [{ backend: 'type=s3', path }, /^parameter verification failed - 'backend'/],
  ];
  for (const [body, re] of cases) {
    const r = await t.api('POST', '/config/datastore', { auth: t.root, body: { name: 'newstore', ...body } });
    assert.equal(r.status, 400, JSON.stringify(r.body));
    assert.match(r.body.message!, re);
  }
  assert.equal(existsSync(path), false);
  assert.equal(existsSync(join(process.cwd(), 'new-store')), false);
  const cfgs = (await get('/config/datastore')).body.data as Array<{ name: string }>;
  assert.equal(
    cfgs.some((c) => c.name === 'newstore'),
    false,
  );
});

test('nothing under the removable, S3, unmount, s3-refresh, offline or delete stores was written or is held open', () => {
  assert.deepEqual(untouchableState(), before_);
  assert.deepEqual(
    STRAY.map((p) => existsSync(p)),
    strayBefore,
  );
  for (const name of UNTOUCHABLE) assert.deepEqual(openFilesUnder('self', join(storesDir, name)), [], name);
});
