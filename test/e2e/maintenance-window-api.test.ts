import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { startTestServer, type TestServer } from '../helpers/https-api.js';

let t: TestServer;
let cfgPath: string;

before(async () => {
  t = await startTestServer({ prefix: 'stowage-window-api-' });
  await t.addBareDatastore('store1');
  await t.addBareDatastore('store2');
  cfgPath = join(t.paths.configDir, 'maintenance-window.cfg');
});
after(() => t.close());

const WINDOW = 'maintenance-window';
const fileText = () => (existsSync(cfgPath) ? readFileSync(cfgPath, 'utf8') : '');

test('a window is created from query parameters, a JSON body or a form body, and read back with a digest', async () => {
  const viaQuery = {
    id: 'via-query',
    store: 'store1',
    schedule: 'sat 02:00',
    duration: '2h 30min',
    type: 'offline',
    message: 'monthly fsck',
    'drain-before': '30min',
  };
  const q = new URLSearchParams(viaQuery);
  const byQuery = await t.api('POST', `/config/${WINDOW}?${q}`, { auth: t.root });
  assert.equal(byQuery.status, 200, JSON.stringify(byQuery.body));
  const byJson = await t.api('POST', `/config/${WINDOW}`, {
    auth: t.root,
    body: { id: 'via-json', store: 'store1', schedule: 'daily', duration: '1h', type: 'sealed' },
  });
  assert.equal(byJson.status, 200, JSON.stringify(byJson.body));
  const byForm = await t.api('POST', `/config/${WINDOW}`, {
    auth: t.root,
    form: 'id=via-form&store=store2&schedule=sun%2003%3A00&duration=45min&type=read-only&comment=weekly',
  });
  assert.equal(byForm.status, 200, JSON.stringify(byForm.body));

  const one = await t.api('GET', `/config/${WINDOW}/via-query`, { auth: t.root });
  assert.equal(one.status, 200);
  assert.deepEqual(one.body.data, viaQuery);
  assert.match(one.body.digest as string, /^[0-9a-f]{64}$/);
  assert.match(
    fileText(),
    /^maintenance-window: via-query\n\tstore store1\n\tschedule sat 02:00\n\tduration 2h 30min\n/,
  );

  const list = await t.api('GET', `/config/${WINDOW}`, { auth: t.root });
  assert.deepEqual(
    (list.body.data as Array<{ id: string }>).map((w) => w.id),
    ['via-query', 'via-json', 'via-form'],
  );

  const dup = await t.api('POST', `/config/${WINDOW}`, {
    auth: t.root,
    body: { id: 'via-json', store: 'store1', schedule: 'daily', duration: '1h', type: 'sealed' },
  });
  assert.equal(dup.status, 409);
});

test('a bad schedule, duration, drain-before, type or message is a 400 naming the field, and nothing is written', async () => {
  const good = { store: 'store1', schedule: 'daily', duration: '1h', type: 'offline' };
  const cases: Array<[field: string, patch: Record<string, unknown>]> = [
    ['schedule', { schedule: 'every tuesday' }],
    ['duration', { duration: '2 fortnights' }],
    ['duration', { duration: '0s' }],
    ['drain-before', { 'drain-before': '10 parsecs' }],
    ['type', { type: 'delete' }],
    ['message', { message: 'x'.repeat(65) }],
    ['message', { message: 'line\nbreak' }],
    ['duration', { duration: undefined }],
  ];
  for (const [field, patch] of cases) {
    const before = fileText();
    const reply = await t.api('POST', `/config/${WINDOW}`, {
      auth: t.root,
      body: { id: 'bad-one', ...good, ...patch },
    });
    assert.equal(reply.status, 400, `${field} ${JSON.stringify(patch)}: ${JSON.stringify(reply.body)}`);
    assert.match(reply.body.message ?? '', new RegExp(`'?${field}'?`), JSON.stringify(reply.body));
    assert.equal(fileText(), before, `${field}: the file is unchanged`);
  }
  // and through update
  const before = fileText();
  const upd = await t.api('PUT', `/config/${WINDOW}/via-json`, {
    auth: t.root,
    body: { duration: '3 eons' },
  });
  assert.equal(upd.status, 400);
  assert.match(upd.body.message ?? '', /invalid duration '3 eons'/);
  assert.equal(fileText(), before);
});

test('update sets fields and deletes others under the digest; remove takes the window out of the file', async () => {
  const read = await t.api('GET', `/config/${WINDOW}/via-query`, { auth: t.root });
  const digest = read.body.digest as string;
  const upd = await t.api('PUT', `/config/${WINDOW}/via-query`, {
    auth: t.root,
    body: { duration: '90min', delete: ['drain-before', 'message'], digest },
  });
  assert.equal(upd.status, 200, JSON.stringify(upd.body));
  const after = await t.api('GET', `/config/${WINDOW}/via-query`, { auth: t.root });
  assert.deepEqual(after.body.data, {
    id: 'via-query',
    store: 'store1',
    schedule: 'sat 02:00',
    duration: '90min',
    type: 'offline',
  });
  const stale = await t.api('PUT', `/config/${WINDOW}/via-query`, {
    auth: t.root,
    body: { duration: '1h', digest },
  });
  assert.notEqual(stale.status, 200);
  assert.match(stale.body.message ?? '', /modified/);

  const removed = await t.api('DELETE', `/config/${WINDOW}/via-query`, { auth: t.root });
  assert.equal(removed.status, 200);
  assert.equal((await t.api('GET', `/config/${WINDOW}/via-query`, { auth: t.root })).status, 404);
  assert.doesNotMatch(fileText(), /via-query/);
});

test('Datastore.Audit reads the windows of its store only; changing one needs Datastore.Modify', async () => {
  const auditor = await t.addUser('auditor@pbs', [{ path: '/datastore/store2', role: 'DatastoreAudit' }]);
  const list = await t.api('GET', `/config/${WINDOW}`, { auth: auditor });
  assert.deepEqual(
    (list.body.data as Array<{ id: string }>).map((w) => w.id),
    ['via-form'],
  );
  const before = fileText();
  const create = await t.api('POST', `/config/${WINDOW}`, {
    auth: auditor,
    body: { id: 'sneaky', store: 'store2', schedule: 'daily', duration: '1h', type: 'offline' },
  });
  assert.equal(create.status, 403);
  const del = await t.api('DELETE', `/config/${WINDOW}/via-form`, { auth: auditor });
  assert.equal(del.status, 403);
  assert.equal(fileText(), before);
});

test('admin/datastore shows each store the window in force or next to come', async () => {
  const reply = await t.api('GET', '/admin/datastore', { auth: t.root });
  const items = reply.body.data as Array<{
    store: string;
    'next-maintenance-window'?: Record<string, unknown>;
  }>;
  const s2 = items.find((i) => i.store === 'store2')?.['next-maintenance-window'];
  assert.ok(s2, JSON.stringify(items));
  assert.equal(s2.id, 'via-form');
  assert.equal(s2.type, 'read-only');
  const start = new Date((s2.start as number) * 1000);
  assert.equal(start.getUTCDay(), 0); // sunday
  assert.equal(start.toISOString().slice(11, 19), '03:00:00');
  assert.equal(s2.end, (s2.start as number) + 45 * 60);
  assert.equal(s2['drain-start'], s2.start);
});
