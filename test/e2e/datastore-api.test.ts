import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { HolderProcess } from '../helpers/holder-process.js';
import { startTestServer, taskLog, waitForTask, type Auth, type TestServer } from '../helpers/https-api.js';
import { writeSnapshots } from '../helpers/snapshot-fixture.js';

let t: TestServer;
let storePath: string;
const STORE = 'data1';
const T1 = 1717236000; // 2024-06-01T10:00:00Z
const T2 = 1717322400; // 2024-06-02T10:00:00Z
const q = (type: string, id: string, time?: number) =>
  `backup-type=${type}&backup-id=${id}${time === undefined ? '' : `&backup-time=${time}`}`;

before(async () => {
  t = await startTestServer({ prefix: 'stowage-e2e-ds-' });
  storePath = await t.addBareDatastore(STORE, { comment: 'primary' });
  await writeSnapshots(t.server.context.datastores, STORE, [
    { type: 'vm', id: '100', time: T1, owner: 'root@pam' },
    { type: 'vm', id: '100', time: T2, owner: 'root@pam' },
    { type: 'host', id: 'alice-laptop', time: T1, owner: 'alice@pbs' },
  ]);
});

after(async () => {
  await t?.close();
});

/** sha256 of every file under `dir`, by relative path: "byte-identical" made checkable. */
function treeHashes(dir: string): Record<string, string> {
  const out: Record<string, string> = {};
  const walk = (d: string) => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      const p = join(d, e.name);
      if (e.isDirectory()) walk(p);
      else out[relative(dir, p)] = createHash('sha256').update(readFileSync(p)).digest('hex');
    }
  };
  walk(dir);
  return out;
}

async function setMode(mode: string | null): Promise<void> {
  const body = mode === null ? { delete: 'maintenance-mode' } : { 'maintenance-mode': mode };
  const res = await t.api('PUT', `/config/datastore/${STORE}`, { auth: t.root, body });
  assert.equal(res.status, 200, JSON.stringify(res.body));
}

async function taskCount(): Promise<number> {
  const res = await t.api('GET', '/nodes/localhost/tasks?limit=0', { auth: t.root });
  return res.body.total as number;
}

async function activeOps(store = STORE): Promise<{ read: number; write: number; lookup: number }> {
  const res = await t.api('GET', `/admin/datastore/${store}/active-operations`, { auth: t.root });
  assert.equal(res.status, 200);
  return res.body.data as { read: number; write: number; lookup: number };
}

test('creating a datastore through the API runs a create-datastore task; bad names and paths are refused up front', async () => {
  const path = join(t.dir, 'created', 'main');
  const before = await taskCount();
  const bad: Array<[Record<string, unknown>, number, RegExp]> = [
    [{ name: 'ab', path }, 400, /'name'/],
    [{ name: 'bad name', path }, 400, /'name'/],
    [{ name: 'rel', path: 'relative/dir' }, 400, /'path': path must be absolute/],
    [{ name: 'inner', path: join(storePath, 'sub') }, 400, /'path': .* overlaps datastore 'data1'/],
    [{ name: STORE, path }, 409, /datastore 'data1' already exists/],
    [{ name: 'mmm', path, 'maintenance-mode': 'delete' }, 400, /maintenance-mode/],
    // pseudo-filesystems: a recursive mkdir under /proc spun the server forever (issue 12)
    [
      { name: 'procnew', path: '/proc/newdir' },
      400,
      /'path': '\/proc\/newdir' is on \/proc, not a filesystem/,
    ],
    [{ name: 'sysnew', path: '/sys/kernel/newdir/x' }, 400, /'path': .* is on \/sys/],
    [{ name: 'devnew', path: '/dev/shm/../newdir' }, 400, /'path': '\/dev\/newdir' is on \/dev/],
  ];
  const full = join(t.dir, 'not-empty');
  mkdirSync(full);
  writeFileSync(join(full, 'file'), 'x');
  bad.push([{ name: 'full', path: full }, 400, /'path': directory .* is not empty/]);
  for (const [body, status, message] of bad) {
    const res = await t.api('POST', '/config/datastore', { auth: t.root, body });
    assert.equal(res.status, status, `${JSON.stringify(body)}: ${JSON.stringify(res.body)}`);
    assert.match(res.body.message!, message);
  }
  assert.equal(await taskCount(), before, 'no refused creation started a task');

  const res = await t.api('POST', '/config/datastore', {
    auth: t.root,
    body: { name: 'main', path, comment: 'made by the API' },
  });
  assert.equal(res.status, 200, JSON.stringify(res.body));
  const upid = res.body.data as string;
  assert.match(
    upid,
    /^UPID:testnode:[0-9A-F]{8}:[0-9A-F]{8,9}:[0-9A-F]{8}:[0-9A-F]{8}:create-datastore:main:root@pam:$/,
  );
  assert.equal(await waitForTask(t, upid, 120_000), 'OK');
  assert.equal(readdirSync(join(path, '.chunks')).length, 65536);
  const got = await t.api('GET', '/config/datastore/main', { auth: t.root });
  assert.deepEqual(got.body.data, { name: 'main', path, comment: 'made by the API' });
  const status = await t.api('GET', '/admin/datastore/main/status', { auth: t.root });
  assert.equal(status.status, 200, 'the new datastore is usable at once');
});

test('the datastore list, the config list and a config entry have the PBS shapes', async () => {
  await setMode('read-only,message="disk swap"');
  try {
    const list = await t.api('GET', '/admin/datastore', { auth: t.root });
    assert.equal(list.status, 200);
    const item = (list.body.data as Array<Record<string, unknown>>).find((s) => s.store === STORE);
    assert.deepEqual(item, {
      store: STORE,
      comment: 'primary',
      'mount-status': 'nonremovable',
      maintenance: 'read-only,message="disk swap"',
      'backend-type': 'filesystem',
    });

    const cfgs = await t.api('GET', '/config/datastore', { auth: t.root });
    assert.equal(cfgs.status, 200);
    assert.match(cfgs.body.digest as string, /^[0-9a-f]{64}$/);
    assert.equal(
      cfgs.body.digest,
      createHash('sha256')
        .update(readFileSync(join(t.paths.configDir, 'datastore.cfg')))
        .digest('hex'),
      'the digest is the SHA-256 of datastore.cfg, as PBS',
    );
    const entry = (cfgs.body.data as Array<Record<string, unknown>>).find((c) => c.name === STORE);
    assert.deepEqual(entry, {
      name: STORE,
      path: storePath,
      comment: 'primary',
      'maintenance-mode': 'read-only,message="disk swap"',
    });
  } finally {
    await setMode(null);
  }
});

test('status and gc status have the PBS shapes, and GC runs as a task that leaves no operation behind', async () => {
  const status = await t.api('GET', `/admin/datastore/${STORE}/status?verbose=1`, { auth: t.root });
  assert.equal(status.status, 200);
  const s = status.body.data as Record<string, unknown>;
  assert.deepEqual(Object.keys(s).sort(), ['avail', 'backend-type', 'counts', 'gc-status', 'total', 'used']);
  assert.ok((s.total as number) > 0);
  assert.deepEqual(s.counts, {
    ct: { groups: 0, snapshots: 0 },
    host: { groups: 1, snapshots: 1 },
    vm: { groups: 1, snapshots: 2 },
    other: { groups: 0, snapshots: 0 },
  });
  const plain = await t.api('GET', `/admin/datastore/${STORE}/status`, { auth: t.root });
  assert.deepEqual(Object.keys(plain.body.data as object).sort(), ['avail', 'backend-type', 'total', 'used']);

  const started = await t.api('POST', `/admin/datastore/${STORE}/gc`, { auth: t.root });
  assert.equal(started.status, 200, JSON.stringify(started.body));
  const upid = started.body.data as string;
  assert.match(upid, /:garbage_collection:data1:root@pam:$/);
  assert.equal(await waitForTask(t, upid), 'OK');
  assert.ok(taskLog(t, upid).some((l) => l.includes('Start GC phase1')));
  assert.deepEqual(
    await activeOps(),
    { ...(await activeOps()), read: 0, write: 0 },
    'the task released its operation',
  );

  const gc = await t.api('GET', `/admin/datastore/${STORE}/gc`, { auth: t.root });
  assert.equal(gc.status, 200);
  const g = gc.body.data as Record<string, unknown>;
  assert.deepEqual(Object.keys(g).sort(), [
    'disk-bytes',
    'disk-chunks',
    'duration',
    'index-data-bytes',
    'index-file-count',
    'last-run-endtime',
    'last-run-state',
    'pending-bytes',
    'pending-chunks',
    'removed-bad',
    'removed-bytes',
    'removed-chunks',
    'still-bad',
    'store',
    'upid',
  ]);
  assert.equal(g.upid, upid);
  assert.equal(g.store, STORE);
  assert.equal(g['last-run-state'], 'OK');
  assert.equal(g['index-file-count'], 3);
  assert.equal(g['disk-chunks'], 6);
});

test('long operations are admitted before their task: in maintenance the start is a synchronous 503 and no task appears', async () => {
  await setMode('offline,message="fsck"');
  try {
    const before = await taskCount();
    const message = `datastore '${STORE}' is unavailable: offline maintenance mode: fsck`;
    for (const [path, body] of [
      [`/admin/datastore/${STORE}/gc`, undefined],
      [`/admin/datastore/${STORE}/verify`, {}],
      [`/admin/datastore/${STORE}/prune-datastore`, { 'keep-last': 1 }],
    ] as const) {
      const res = await t.api('POST', path, { auth: t.root, body });
      assert.deepEqual([res.status, res.body.message], [503, message], path);
    }
    assert.equal(await taskCount(), before);
    const status = await t.api('GET', `/admin/datastore/${STORE}/status`, { auth: t.root });
    assert.deepEqual([status.status, status.body.message], [503, message]);
    assert.deepEqual(await activeOps(), { ...(await activeOps()), read: 0, write: 0 });
  } finally {
    await setMode(null);
  }
});

test('on a read-only datastore the default verify is refused, and read-only verify runs and leaves every file byte-identical', async () => {
  await setMode('read-only,message="disk swap"');
  try {
    const before = treeHashes(storePath);
    const refused = await t.api('POST', `/admin/datastore/${STORE}/verify`, { auth: t.root, body: {} });
    assert.deepEqual(
      [refused.status, refused.body.message],
      [503, `datastore '${STORE}' is unavailable: read-only maintenance mode: disk swap`],
    );
    const res = await t.api('POST', `/admin/datastore/${STORE}/verify`, {
      auth: t.root,
      body: { 'read-only': true },
    });
    assert.equal(res.status, 200, JSON.stringify(res.body));
    assert.equal(await waitForTask(t, res.body.data as string), 'OK');
    const log = taskLog(t, res.body.data as string);
    assert.ok(
      log.some((l) => l.includes('verify vm/100/2024-06-02T10:00:00Z')),
      log.join('\n'),
    );
    assert.ok(log.some((l) => l.includes('nothing is recorded')));
    assert.deepEqual(treeHashes(storePath), before);
  } finally {
    await setMode(null);
  }
  const write = await t.api('POST', `/admin/datastore/${STORE}/verify`, {
    auth: t.root,
    body: { 'backup-type': 'vm', 'backup-id': '100' },
  });
  assert.equal(write.status, 200);
  const upid = write.body.data as string;
  assert.match(upid, /:verify_group:/);
  assert.equal(await waitForTask(t, upid), 'OK');
  const snaps = await t.api('GET', `/admin/datastore/${STORE}/snapshots?${q('vm', '100')}`, { auth: t.root });
  for (const s of snaps.body.data as Array<{ verification?: unknown }>) {
    assert.deepEqual(s.verification, { upid, state: 'ok' }, 'the default verify records its result');
  }
  assert.deepEqual(await activeOps(), { ...(await activeOps()), read: 0, write: 0 });
});

test('groups, snapshots, files, notes and the protected flag read and change what is on disk', async () => {
  const groups = await t.api('GET', `/admin/datastore/${STORE}/groups`, { auth: t.root });
  assert.equal(groups.status, 200);
  assert.deepEqual(groups.body.data, [
    {
      'backup-type': 'host',
      'backup-id': 'alice-laptop',
      'last-backup': T1,
      'backup-count': 1,
      files: ['drive-scsi0.img.fidx', 'index.json.blob'],
      owner: 'alice@pbs',
    },
    {
      'backup-type': 'vm',
      'backup-id': '100',
      'last-backup': T2,
      'backup-count': 2,
      files: ['drive-scsi0.img.fidx', 'index.json.blob'],
      owner: 'root@pam',
    },
  ]);

  const notes = await t.api('PUT', `/admin/datastore/${STORE}/notes`, {
    auth: t.root,
    body: {
      'backup-type': 'vm',
      'backup-id': '100',
      'backup-time': T1,
      notes: 'before upgrade\nsecond line',
    },
  });
  assert.equal(notes.status, 200);
  const gotNotes = await t.api('GET', `/admin/datastore/${STORE}/notes?${q('vm', '100', T1)}`, {
    auth: t.root,
  });
  assert.equal(gotNotes.body.data, 'before upgrade\nsecond line');
  await t.api('PUT', `/admin/datastore/${STORE}/group-notes`, {
    auth: t.root,
    body: { 'backup-type': 'vm', 'backup-id': '100', notes: 'the web server' },
  });
  const gn = await t.api('GET', `/admin/datastore/${STORE}/group-notes?${q('vm', '100')}`, { auth: t.root });
  assert.equal(gn.body.data, 'the web server');

  const prot = await t.api('PUT', `/admin/datastore/${STORE}/protected`, {
    auth: t.root,
    body: { 'backup-type': 'vm', 'backup-id': '100', 'backup-time': T1, protected: true },
  });
  assert.equal(prot.status, 200);
  const isProt = await t.api('GET', `/admin/datastore/${STORE}/protected?${q('vm', '100', T1)}`, {
    auth: t.root,
  });
  assert.equal(isProt.body.data, true);

  const snaps = await t.api('GET', `/admin/datastore/${STORE}/snapshots?${q('vm', '100')}`, { auth: t.root });
  const first = (snaps.body.data as Array<Record<string, unknown>>)[0]!;
  assert.deepEqual(Object.keys(first).sort(), [
    'backup-id',
    'backup-time',
    'backup-type',
    'comment',
    'files',
    'owner',
    'protected',
    'size',
    'verification',
  ]);
  assert.equal(first.comment, 'before upgrade');
  assert.equal(first.protected, true);
  const files = await t.api('GET', `/admin/datastore/${STORE}/files?${q('vm', '100', T1)}`, { auth: t.root });
  assert.deepEqual(
    (files.body.data as Array<{ filename: string; 'crypt-mode': string }>).map((f) => [
      f.filename,
      f['crypt-mode'],
    ]),
    [
      ['drive-scsi0.img.fidx', 'none'],
      ['index.json.blob', 'none'],
    ],
  );

  const dry = await t.api('POST', `/admin/datastore/${STORE}/prune`, {
    auth: t.root,
    body: { 'backup-type': 'vm', 'backup-id': '100', 'keep-last': 1, 'dry-run': true },
  });
  assert.equal(dry.status, 200);
  assert.deepEqual(dry.body.data, [
    { 'backup-type': 'vm', 'backup-id': '100', 'backup-time': T2, keep: true, protected: false },
    { 'backup-type': 'vm', 'backup-id': '100', 'backup-time': T1, keep: true, protected: true },
  ]);
  const delProtected = await t.api('DELETE', `/admin/datastore/${STORE}/snapshots?${q('vm', '100', T1)}`, {
    auth: t.root,
  });
  assert.equal(delProtected.status, 409, 'a protected snapshot cannot be deleted');
  assert.ok(existsSync(join(storePath, 'vm/100/2024-06-01T10:00:00Z')));
});

test('a dry-run prune is a read, so it previews on a read-only datastore while a real prune is refused', async () => {
  await setMode('read-only');
  try {
    const body = { 'backup-type': 'vm', 'backup-id': '100', 'keep-last': 1 };
    const dry = await t.api('POST', `/admin/datastore/${STORE}/prune`, {
      auth: t.root,
      body: { ...body, 'dry-run': true },
    });
    assert.equal(dry.status, 200);
    const real = await t.api('POST', `/admin/datastore/${STORE}/prune`, { auth: t.root, body });
    assert.equal(real.status, 503);
  } finally {
    await setMode(null);
  }
});

test('datastore usage shows an error entry for a store in maintenance to auditors, and only the name to namespace users without touching the disk', async () => {
  await t.addBareDatastore('ghost');
  // a configured datastore whose path does not exist: any disk access would fail
  await t.server.context.datastores.config.update((stores) => {
    stores.set('ghost', { name: 'ghost', path: join(t.dir, 'nowhere', 'ghost') });
  });
  await setMode('offline,message="moving"');
  try {
    const auditor = await t.addUser('audit1@pbs', [{ path: '/datastore', role: 'DatastoreAudit' }]);
    const usage = await t.api('GET', '/status/datastore-usage', { auth: auditor });
    assert.equal(usage.status, 200);
    const items = usage.body.data as Array<Record<string, unknown>>;
    assert.deepEqual(
      items.find((i) => i.store === STORE),
      {
        store: STORE,
        error: `datastore '${STORE}' is unavailable: offline maintenance mode: moving`,
      },
    );
    assert.ok(typeof items.find((i) => i.store === 'ghost')?.error === 'string');

    const nsUser = await t.addUser('nsuser@pbs', [
      { path: `/datastore/${STORE}/team`, role: 'DatastoreBackup' },
      { path: '/datastore/ghost/team', role: 'DatastoreBackup' },
    ]);
    const limited = await t.api('GET', '/status/datastore-usage', { auth: nsUser });
    assert.equal(limited.status, 200);
    assert.deepEqual(limited.body.data, [{ store: STORE }, { store: 'ghost' }]);
    const list = await t.api('GET', '/admin/datastore', { auth: nsUser });
    const plain = { 'mount-status': 'nonremovable', 'backend-type': 'filesystem' };
    assert.deepEqual(list.body.data, [
      { store: STORE, ...plain, maintenance: 'offline,message="moving"' },
      { store: 'ghost', ...plain },
    ]);
  } finally {
    await setMode(null);
    await t.server.context.datastores.config.update((stores) => {
      stores.delete('ghost');
    });
  }
});

test('each privilege family is checked, and the 403 names the missing privilege', async () => {
  const nobody = await t.addUser('nobody@pbs');
  const alice = await t.addUser('alice@pbs', [{ path: `/datastore/${STORE}`, role: 'DatastoreBackup' }]);
  const cases: Array<[Auth, string, string, Record<string, unknown> | undefined, string]> = [
    [
      nobody,
      'GET',
      `/config/datastore/${STORE}`,
      undefined,
      `missing Datastore.Audit on /datastore/${STORE}`,
    ],
    [
      nobody,
      'GET',
      `/admin/datastore/${STORE}/active-operations`,
      undefined,
      `missing Datastore.Audit on /datastore/${STORE}`,
    ],
    [
      alice,
      'PUT',
      `/config/datastore/${STORE}`,
      { comment: 'x' },
      `missing Datastore.Modify on /datastore/${STORE}`,
    ],
    [
      alice,
      'POST',
      `/admin/datastore/${STORE}/gc`,
      undefined,
      `missing Datastore.Modify on /datastore/${STORE}`,
    ],
    [
      nobody,
      'GET',
      `/admin/datastore/${STORE}/snapshots`,
      undefined,
      `missing Datastore.Audit|Datastore.Backup on /datastore/${STORE}`,
    ],
    [
      alice,
      'DELETE',
      `/admin/datastore/${STORE}/snapshots?${q('host', 'alice-laptop', T1)}`,
      undefined,
      `missing Datastore.Modify|Datastore.Prune on /datastore/${STORE}`,
    ],
    [
      nobody,
      'POST',
      `/admin/datastore/${STORE}/verify`,
      {},
      `missing Datastore.Verify|Datastore.Backup on /datastore/${STORE}`,
    ],
    [
      alice,
      'POST',
      '/config/datastore',
      { name: 'other', path: join(t.dir, 'o') },
      'missing Datastore.Allocate on /datastore',
    ],
    [
      alice,
      'DELETE',
      `/config/datastore/${STORE}`,
      undefined,
      `missing Datastore.Allocate on /datastore/${STORE}`,
    ],
  ];
  const before = readFileSync(join(t.paths.configDir, 'datastore.cfg'));
  for (const [auth, method, path, body, missing] of cases) {
    const res = await t.api(method, path, { auth, body });
    assert.deepEqual(
      [res.status, res.body.message],
      [403, `permission check failed - ${missing}`],
      `${method} ${path}`,
    );
  }
  assert.deepEqual(readFileSync(join(t.paths.configDir, 'datastore.cfg')), before);

  // Backup without Audit: only owned groups are listed, and another's group is refused by owner
  const mine = await t.api('GET', `/admin/datastore/${STORE}/snapshots`, { auth: alice });
  assert.equal(mine.status, 200);
  assert.deepEqual(
    (mine.body.data as Array<{ 'backup-id': string }>).map((s) => s['backup-id']),
    ['alice-laptop'],
  );
  const own = await t.api('GET', `/admin/datastore/${STORE}/notes?${q('host', 'alice-laptop', T1)}`, {
    auth: alice,
  });
  assert.equal(own.status, 200);
  const theirs = await t.api('GET', `/admin/datastore/${STORE}/notes?${q('vm', '100', T1)}`, { auth: alice });
  assert.deepEqual(
    [theirs.status, theirs.body.message],
    [403, 'backup owner check failed (alice@pbs != root@pam)'],
  );
  const verifyOwn = await t.api('POST', `/admin/datastore/${STORE}/verify`, {
    auth: alice,
    body: { 'backup-type': 'host', 'backup-id': 'alice-laptop', 'read-only': true },
  });
  assert.equal(verifyOwn.status, 200, 'Backup verifies the groups it owns');
  const verifyTheirs = await t.api('POST', `/admin/datastore/${STORE}/verify`, {
    auth: alice,
    body: { 'backup-type': 'vm', 'backup-id': '100' },
  });
  assert.equal(verifyTheirs.status, 403, 'the owner check of a verify happens before its task');
  await waitForTask(t, verifyOwn.body.data as string);

  // Prune + owner may delete its own snapshot
  const pruner = await t.addUser('pruner@pbs', [{ path: `/datastore/${STORE}`, role: 'DatastorePowerUser' }]);
  const notOwner = await t.api('DELETE', `/admin/datastore/${STORE}/snapshots?${q('vm', '100', T2)}`, {
    auth: pruner,
  });
  assert.equal(notOwner.status, 403);
  assert.ok(existsSync(join(storePath, 'vm/100/2024-06-02T10:00:00Z')));
});

test('removing a datastore: if-idle refuses a busy one at once, a drain timeout restores its mode, an idle one is removed', async () => {
  const path = await t.addBareDatastore('gone1');
  const holder = await new HolderProcess(t.paths).start();
  try {
    const id = await holder.hold('gone1', 'read', 'restore', 'vm/1');
    const before = await taskCount();
    const busy = await t.api('DELETE', '/config/datastore/gone1?if-idle=1', { auth: t.root });
    assert.equal(busy.status, 409);
    assert.deepEqual(
      (busy.body.details as { operations: Array<{ id: number }> }).operations.map((o) => o.id),
      [id],
    );
    assert.equal(await taskCount(), before, 'the refusal is synchronous: no task');

    const timedOut = await t.api('DELETE', '/config/datastore/gone1?timeout=1', { auth: t.root });
    assert.equal(timedOut.status, 200);
    const status = await waitForTask(t, timedOut.body.data as string);
    assert.match(status, /still in use after 1s, removal aborted and maintenance mode restored to none/);
    const cfg = await t.api('GET', '/config/datastore/gone1', { auth: t.root });
    assert.equal(cfg.status, 200);
    assert.equal((cfg.body.data as Record<string, unknown>)['maintenance-mode'], undefined);

    await holder.send({ cmd: 'release', id });
    const removed = await t.api('DELETE', '/config/datastore/gone1?destroy-data=1', { auth: t.root });
    assert.equal(await waitForTask(t, removed.body.data as string), 'OK');
    assert.equal((await t.api('GET', '/config/datastore/gone1', { auth: t.root })).status, 404);
    assert.equal(existsSync(join(path, '.chunks')), false);
  } finally {
    await holder.stop();
  }
});

test('a bad gc-schedule is refused naming it, and removing a datastore removes its jobs unless keep-job-configs', async () => {
  await t.addBareDatastore('jobs1');
  await t.addBareDatastore('jobs2');
  const before = readFileSync(join(t.paths.configDir, 'datastore.cfg'), 'utf8');
  const bad = await t.api('PUT', '/config/datastore/jobs1', {
    auth: t.root,
    body: { 'gc-schedule': 'every tuesday' },
  });
  assert.equal(bad.status, 400);
  assert.match(bad.body.message!, /gc-schedule/);
  assert.equal(readFileSync(join(t.paths.configDir, 'datastore.cfg'), 'utf8'), before);
  const good = await t.api('PUT', '/config/datastore/jobs1', {
    auth: t.root,
    body: { 'gc-schedule': 'sat 18:15' },
  });
  assert.equal(good.status, 200, JSON.stringify(good.body));

  for (const store of ['jobs1', 'jobs2']) {
    const r = await t.api('POST', '/config/prune', {
      auth: t.root,
      body: { id: `prune-${store}`, store, schedule: 'daily', 'keep-last': 3 },
    });
    assert.equal(r.status, 200, JSON.stringify(r.body));
  }
  const gone = await t.api('DELETE', '/config/datastore/jobs1', { auth: t.root });
  assert.equal(await waitForTask(t, gone.body.data as string), 'OK');
  const kept = await t.api('DELETE', '/config/datastore/jobs2?keep-job-configs=1', { auth: t.root });
  assert.equal(await waitForTask(t, kept.body.data as string), 'OK');
  const jobs = await t.api('GET', '/config/prune', { auth: t.root });
  assert.deepEqual(
    (jobs.body.data as Array<{ id: string }>).map((j) => j.id),
    ['prune-jobs2'],
  );
});

test('the low-space thresholds are set, shown and reset through the API; release at or below hold is a 400 changing nothing', async () => {
  await t.addBareDatastore('space1');
  const cfgFile = join(t.paths.configDir, 'datastore.cfg');
  const set = await t.api('PUT', '/config/datastore/space1', {
    auth: t.root,
    form: 'low-space-hold=3&low-space-release=20',
  });
  assert.equal(set.status, 200, JSON.stringify(set.body));
  const shown = await t.api('GET', '/config/datastore/space1', { auth: t.root });
  assert.equal((shown.body.data as Record<string, unknown>)['low-space-hold'], 3);
  assert.equal((shown.body.data as Record<string, unknown>)['low-space-release'], 20);

  const before = readFileSync(cfgFile, 'utf8');
  for (const body of [{ 'low-space-hold': 20 }, { 'low-space-release': 2 }, { 'low-space-hold': 101 }]) {
    const bad = await t.api('PUT', '/config/datastore/space1', { auth: t.root, body });
    assert.equal(bad.status, 400, JSON.stringify(body));
    assert.match(bad.body.message!, /low-space-(hold|release)/);
    assert.equal(readFileSync(cfgFile, 'utf8'), before, 'a refused update writes nothing');
  }

  const reset = await t.api('PUT', '/config/datastore/space1', {
    auth: t.root,
    body: { delete: 'low-space-hold,low-space-release' },
  });
  assert.equal(reset.status, 200, JSON.stringify(reset.body));
  assert.doesNotMatch(readFileSync(cfgFile, 'utf8'), /low-space/);
});
