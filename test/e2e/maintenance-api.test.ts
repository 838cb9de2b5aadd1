import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { HolderProcess } from '../helpers/holder-process.js';
import { startTestServer, type ApiReply, type TestServer } from '../helpers/https-api.js';
import { writeSnapshots } from '../helpers/snapshot-fixture.js';

let t: TestServer;
const STORE = 'store1';
const T1 = 1717236000; // 2024-06-01T10:00:00Z

before(async () => {
  t = await startTestServer({ prefix: 'stowage-e2e-maint-' });
  await t.addBareDatastore(STORE);
  await writeSnapshots(t.server.context.datastores, STORE, [{ type: 'vm', id: '100', time: T1 }]);
});

after(async () => {
  await t?.close();
});

const cfgFile = () => readFileSync(join(t.paths.configDir, 'datastore.cfg'));

function setMode(mode: string | null, extra: Record<string, unknown> = {}): Promise<ApiReply> {
  const body =
    mode === null ? { delete: 'maintenance-mode', ...extra } : { 'maintenance-mode': mode, ...extra };
  return t.api('PUT', `/config/datastore/${STORE}`, { auth: t.root, body });
}

/** One endpoint per operation class: read (snapshot list), write (notes), none (active-operations, list). */
async function probe(): Promise<{ read: ApiReply; write: ApiReply; ops: ApiReply; list: ApiReply }> {
  return {
    read: await t.api('GET', `/admin/datastore/${STORE}/snapshots`, { auth: t.root }),
    write: await t.api('PUT', `/admin/datastore/${STORE}/notes`, {
      auth: t.root,
      body: { 'backup-type': 'vm', 'backup-id': '100', 'backup-time': T1, notes: 'probe' },
    }),
    ops: await t.api('GET', `/admin/datastore/${STORE}/active-operations`, { auth: t.root }),
    list: await t.api('GET', '/admin/datastore', { auth: t.root }),
  };
}

test('every maintenance transition through PUT config/datastore changes which classes are admitted, with the exact refusal', async () => {
  const ro = `datastore '${STORE}' is unavailable: read-only maintenance mode: disk swap`;
  const off = `datastore '${STORE}' is unavailable: offline maintenance mode: fsck, back at 10`;
  const steps: Array<{ mode: string | null; stored?: string; read: string | null; write: string | null }> = [
    { mode: null, read: null, write: null },
    { mode: 'read-only,message="disk swap"', stored: 'read-only,message="disk swap"', read: null, write: ro },
    {
      mode: 'type=offline,message="fsck, back at 10"',
      stored: 'offline,message="fsck, back at 10"',
      read: off,
      write: off,
    },
    { mode: 'read-only,message="disk swap"', stored: 'read-only,message="disk swap"', read: null, write: ro },
    {
      mode: 'offline',
      stored: 'offline',
      read: `datastore '${STORE}' is unavailable: offline maintenance mode`,
      write: `datastore '${STORE}' is unavailable: offline maintenance mode`,
    },
    { mode: null, read: null, write: null },
  ];
  for (const step of steps) {
    const res = await setMode(step.mode);
    assert.equal(res.status, 200, `${step.mode}: ${JSON.stringify(res.body)}`);
    assert.equal(res.body.data, null);
    assert.equal(res.body.conflicting, 0);
    const p = await probe();
    const label = `in mode ${step.mode ?? 'none'}`;
    for (const [name, expected] of [
      ['read', step.read],
      ['write', step.write],
    ] as const) {
      const r = p[name];
      if (expected === null) assert.equal(r.status, 200, `${name} ${label}: ${JSON.stringify(r.body)}`);
      else
        assert.deepEqual(
          [r.status, r.body.message, r.body.data, r.body.code],
          [503, expected, null, 'MAINTENANCE'],
          `${name} ${label}`,
        );
    }
    assert.equal(p.ops.status, 200, `active-operations ${label}`);
    assert.equal((p.ops.body.data as { 'maintenance-mode'?: string })['maintenance-mode'], step.stored);
    assert.equal(p.list.status, 200);
    const item = (p.list.body.data as Array<{ store: string; maintenance?: string }>).find(
      (s) => s.store === STORE,
    );
    assert.deepEqual(
      item,
      {
        store: STORE,
        'mount-status': 'nonremovable',
        ...(step.stored && { maintenance: step.stored }),
        'backend-type': 'filesystem',
      },
      label,
    );
    if (step.stored)
      assert.match(
        cfgFile().toString(),
        new RegExp(`maintenance-mode ${step.stored.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}\n`),
      );
  }
  assert.doesNotMatch(cfgFile().toString(), /maintenance-mode/);
});

test('a change is graceful: a running operation of another process shows with its details, keeps running, and wait-drained reports when it ends', async () => {
  const holder = await new HolderProcess(t.paths).start();
  try {
    const id = await holder.hold(STORE, 'ingest', 'backup', 'vm/100');
    const set = await setMode('read-only,message="disk swap"');
    assert.equal(set.status, 200);
    assert.equal(set.body.conflicting, 1, 'the response says one conflicting operation is still running');

    const ops = await t.api('GET', `/admin/datastore/${STORE}/active-operations`, { auth: t.root });
    assert.equal(ops.status, 200);
    const data = ops.body.data as Record<string, unknown> & { operations: Array<Record<string, unknown>> };
    assert.equal(data.read, 0);
    assert.equal(data.write, 1);
    assert.equal(data.conflicting, 1);
    assert.equal(data['maintenance-mode'], 'read-only,message="disk swap"');
    assert.equal(data.operations.length, 1);
    const op = data.operations[0]!;
    assert.deepEqual(
      { ...op, started: typeof op.started },
      { id, class: 'ingest', kind: 'backup', detail: 'vm/100', pid: holder.pid, started: 'number' },
    );
    assert.ok(Math.abs((op.started as number) - Date.now() / 1000) < 60);

    const refused = await probe();
    assert.equal(refused.write.status, 503, 'new writes are refused while the old one runs');

    const notYet = await t.api('POST', `/admin/datastore/${STORE}/wait-drained`, {
      auth: t.root,
      body: { timeout: 1 },
    });
    assert.equal(notYet.status, 200);
    const nd = notYet.body.data as { drained: boolean; remaining: Array<{ id: number }>; mode: string };
    assert.equal(nd.drained, false);
    assert.deepEqual(
      nd.remaining.map((o) => o.id),
      [id],
    );
    assert.equal(nd.mode, 'read-only,message="disk swap"');

    const started = Date.now();
    const waiting = t.api('POST', `/admin/datastore/${STORE}/wait-drained`, {
      auth: t.root,
      body: { timeout: 20 },
    });
    await new Promise((r) => setTimeout(r, 300));
    await holder.send({ cmd: 'release', id });
    const drained = await waiting;
    assert.equal(drained.status, 200);
    assert.deepEqual((drained.body.data as { drained: boolean; remaining: unknown[] }).drained, true);
    assert.deepEqual((drained.body.data as { remaining: unknown[] }).remaining, []);
    assert.ok(
      Date.now() - started < 10_000,
      'the long poll ends when the operation does, not at its timeout',
    );
    const after = await t.api('GET', `/admin/datastore/${STORE}/active-operations`, { auth: t.root });
    assert.equal((after.body.data as { conflicting: number }).conflicting, 0);
  } finally {
    await holder.stop();
    await setMode(null);
  }
});

test('wait-drained refuses a timeout outside 1..300 seconds, naming it', async () => {
  const res = await t.api('POST', `/admin/datastore/${STORE}/wait-drained`, {
    auth: t.root,
    body: { timeout: 301 },
  });
  assert.equal(res.status, 400);
  assert.ok(res.body.errors?.timeout);
});

test('with if-idle a change is refused with 409 listing the running operations, and datastore.cfg stays the same', async () => {
  const holder = await new HolderProcess(t.paths).start();
  try {
    const id = await holder.hold(STORE, 'read', 'restore', 'vm/100/2024-06-01T10:00:00Z');
    const before = cfgFile();
    const res = await setMode('offline', { 'if-idle': true });
    assert.equal(res.status, 409);
    assert.match(
      res.body.message!,
      /^datastore 'store1' is not idle, mode not changed: 1 conflicting operation\(s\) active: restore vm\/100\/2024-06-01T10:00:00Z/,
    );
    assert.ok(res.body.errors?.['if-idle']);
    const listed = (res.body.details as { operations: Array<{ id: number; kind: string; class: string }> })
      .operations;
    assert.deepEqual(
      listed.map((o) => [o.id, o.kind, o.class]),
      [[id, 'restore', 'read']],
    );
    assert.deepEqual(cfgFile(), before);

    const readOnly = await setMode('read-only', { 'if-idle': true });
    assert.equal(readOnly.status, 200, 'a read does not conflict with read-only, so if-idle lets it through');
    assert.equal(readOnly.body.conflicting, 0);
    await holder.send({ cmd: 'release', id });
    const offline = await setMode('offline', { 'if-idle': true });
    assert.equal(offline.status, 200, 'once idle the same change succeeds');
  } finally {
    await holder.stop();
    await setMode(null);
  }
});

test('a stale digest is refused with PBS wording and changes nothing', async () => {
  const got = await t.api('GET', `/config/datastore/${STORE}`, { auth: t.root });
  const digest = got.body.digest as string;
  assert.match(digest, /^[0-9a-f]{64}$/);
  const ok = await t.api('PUT', `/config/datastore/${STORE}`, {
    auth: t.root,
    body: { comment: 'first', digest },
  });
  assert.equal(ok.status, 200, JSON.stringify(ok.body));
  const before = cfgFile();
  for (const body of [
    { comment: 'second', digest },
    { 'maintenance-mode': 'offline', digest },
  ]) {
    const stale = await t.api('PUT', `/config/datastore/${STORE}`, { auth: t.root, body });
    assert.equal(stale.status, 409);
    assert.equal(
      stale.body.message,
      'detected modified configuration - file changed by other user? Try again.',
    );
  }
  assert.deepEqual(cfgFile(), before);
});

test('bad maintenance-mode values are a 400 naming maintenance-mode and leave datastore.cfg byte-identical', async () => {
  const before = cfgFile();
  const bad = [
    `read-only,message="${'x'.repeat(65)}"`,
    'read-only,message="line one\\nline two"',
    'read-only,message=line\u0001',
    'maintenance',
    'type=frozen',
    'offline,message="unbalanced',
    'offline,colour=red',
  ];
  for (const mode of bad) {
    const res = await setMode(mode, { comment: 'must not be applied either' });
    assert.equal(res.status, 400, `${JSON.stringify(mode)}: ${JSON.stringify(res.body)}`);
    assert.match(res.body.message!, /maintenance-mode/, `${JSON.stringify(mode)}: ${res.body.message}`);
    assert.deepEqual(cfgFile(), before, `datastore.cfg changed after ${JSON.stringify(mode)}`);
  }
  const del = await setMode('delete');
  assert.equal(del.status, 400, 'type delete is set only by removing the datastore');
  assert.match(
    del.body.message!,
    /^parameter verification failed - 'maintenance-mode': type 'delete' cannot be set by hand/,
  );
  assert.match(del.body.errors!['maintenance-mode']!, /^type 'delete' cannot be set by hand/);
  const unknownDelete = await t.api('PUT', `/config/datastore/${STORE}`, {
    auth: t.root,
    form: 'delete=comment,bogus',
  });
  assert.equal(unknownDelete.status, 400);
  assert.match(unknownDelete.body.message!, /'delete': unknown property 'bogus'/);
  assert.deepEqual(cfgFile(), before);
});

test('the delete list takes an array or a comma list, from JSON or a form as the web UI sends it', async () => {
  await t.api('PUT', `/config/datastore/${STORE}`, {
    auth: t.root,
    body: { comment: 'c', 'gc-schedule': 'daily', 'maintenance-mode': 'read-only' },
  });
  const form = await t.api('PUT', `/config/datastore/${STORE}`, {
    auth: t.root,
    form: 'delete=comment%2Cmaintenance-mode',
  });
  assert.equal(form.status, 200, JSON.stringify(form.body));
  let cfg = (await t.api('GET', `/config/datastore/${STORE}`, { auth: t.root })).body.data as Record<
    string,
    unknown
  >;
  assert.deepEqual(
    [cfg.comment, cfg['maintenance-mode'], cfg['gc-schedule']],
    [undefined, undefined, 'daily'],
  );
  const arr = await t.api('PUT', `/config/datastore/${STORE}`, {
    auth: t.root,
    body: { delete: ['gc-schedule'] },
  });
  assert.equal(arr.status, 200);
  cfg = (await t.api('GET', `/config/datastore/${STORE}`, { auth: t.root })).body.data as Record<
    string,
    unknown
  >;
  assert.equal(cfg['gc-schedule'], undefined);
});
