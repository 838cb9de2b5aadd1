/**
 * `GET /api2/json/backup` and `/reader` without an `Upgrade` header, as a confused client or a
 * scanner sends them: PBS routes both protocols as GET, so such a request gets the upgrade's own
 * checks in order and then 400 `missing Upgrade header` — never a 404 and never a session.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { startTestServer, type TestServer } from '../helpers/https-api.js';

let srv: TestServer;
let storePath: string;

before(async () => {
  srv = await startTestServer({ prefix: 'stowage-e2e-plainget-' });
  storePath = await srv.addBareDatastore('store1');
});

after(async () => {
  await srv?.close();
});

const snapshot = 'store=store1&backup-type=host&backup-id=web01&backup-time=1700000000';

for (const kind of ['backup', 'reader'] as const) {
  test(`a plain GET of /${kind} is a 400 'missing Upgrade header' after the upgrade's checks, and starts nothing`, async () => {
    const tasksBefore = (await srv.api('GET', '/nodes/localhost/tasks', { auth: srv.root })).body
      .data as unknown[];

    const ok = await srv.api('GET', `/${kind}?${snapshot}`, { auth: srv.root });
    assert.equal(ok.status, 400);
    assert.equal(ok.body.message, 'missing Upgrade header');

    // the checks before it, in PBS's order
    const anonymous = await srv.api('GET', `/${kind}?${snapshot}`, { auth: {} });
    assert.equal(anonymous.status, 401);
    const missing = await srv.api('GET', `/${kind}?store=store1&backup-type=host&backup-id=web01`, {
      auth: srv.root,
    });
    assert.equal(missing.status, 400);
    assert.match(JSON.stringify(missing.body), /backup-time/);
    const unknown = await srv.api('GET', `/${kind}?${snapshot.replace('store1', 'nostore')}`, {
      auth: srv.root,
    });
    assert.equal(unknown.status, 404);
    const user = await srv.addUser(`plain-${kind}@pbs`);
    const denied = await srv.api('GET', `/${kind}?${snapshot}`, { auth: user });
    assert.equal(denied.status, kind === 'backup' ? 403 : 400);

    // nothing written, no task, no operation left counted
    assert.ok(!existsSync(join(storePath, 'host')), 'no group directory');
    const tasksAfter = (await srv.api('GET', '/nodes/localhost/tasks', { auth: srv.root })).body
      .data as unknown[];
    assert.equal(tasksAfter.length, tasksBefore.length);
    const ops = await srv.api('GET', '/admin/datastore/store1/active-operations', { auth: srv.root });
    const counts = ops.body.data as { read: number; write: number };
    assert.deepEqual([counts.read, counts.write], [0, 0]);
    assert.deepEqual(readdirSync(storePath).sort(), ['.chunks', '.lock']);
  });
}

test('a plain GET of /backup on an offline datastore gets the maintenance refusal, as the upgrade would', async () => {
  const set = await srv.api('PUT', '/config/datastore/store1', {
    auth: srv.root,
    body: { 'maintenance-mode': 'type=offline,message=swap' },
  });
  try {
    assert.equal(set.status, 200, JSON.stringify(set.body));
    const r = await srv.api('GET', `/backup?${snapshot}`, { auth: srv.root });
    assert.equal(r.status, 503, JSON.stringify(r.body));
    assert.match(String(r.body.message), /offline.*swap/);
  } finally {
    await srv.api('PUT', '/config/datastore/store1', {
      auth: srv.root,
      body: { delete: 'maintenance-mode' },
    });
  }
});
