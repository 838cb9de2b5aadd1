/**
 * `GET admin/datastore/{store}/maintenance-history` over HTTPS: an operator's mode changes and
 * the drains after them, newest first, with who, from, to, message and the drain's duration;
 * readable while the store is offline, by an auditor, paged with `limit` and `before` given in the
 * query, a JSON body or a form body (PBS reads a GET's body too).
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import type { MaintenanceHistoryItem } from '../../src/api-types/maintenance-history.js';
import { startTestServer, type Auth, type RequestOptions, type TestServer } from '../helpers/https-api.js';

let t: TestServer;
let auditor: Auth;
const STORE = 'store1';
const HISTORY = `/admin/datastore/${STORE}/maintenance-history`;

before(async () => {
  t = await startTestServer({ prefix: 'stowage-history-' });
  await t.addBareDatastore(STORE);
  auditor = await t.addUser('auditor@pbs', [{ path: `/datastore/${STORE}`, role: 'DatastoreAudit' }]);
});
after(() => t.close());

async function setMode(body: Record<string, unknown>): Promise<void> {
  const res = await t.api('PUT', `/config/datastore/${STORE}`, { auth: t.root, body });
  assert.equal(res.status, 200, JSON.stringify(res.body));
}

/** Wait until the mode has drained: records the drain in the history at once. */
async function waitDrained(): Promise<void> {
  const res = await t.api('POST', `/admin/datastore/${STORE}/wait-drained`, { auth: t.root });
  assert.equal(res.status, 200, JSON.stringify(res.body));
  assert.equal((res.body.data as { drained: boolean }).drained, true);
}

async function history(opts: RequestOptions & { query?: string } = {}): Promise<MaintenanceHistoryItem[]> {
  const res = await t.api('GET', `${HISTORY}${opts.query ?? ''}`, { auth: t.root, ...opts });
  assert.equal(res.status, 200, JSON.stringify(res.body));
  return res.body.data as MaintenanceHistoryItem[];
}

test('mode changes and their drains are listed newest first, also while the store is offline', async () => {
  const start = Math.floor(Date.now() / 1000);
  await setMode({ 'maintenance-mode': 'read-only,message="disk swap"' });
  await waitDrained();
  await setMode({ 'maintenance-mode': 'offline,message="array rebuild"' });
  await waitDrained();

  // offline: nothing reads the datastore, the history still answers (to an auditor too)
  const offline = await t.api('GET', HISTORY, { auth: auditor });
  assert.equal(offline.status, 200, JSON.stringify(offline.body));
  assert.equal((offline.body.data as MaintenanceHistoryItem[])[0]!.to, 'offline');

  await setMode({ delete: 'maintenance-mode' });
  const items = await history();
  assert.deepEqual(
    items.map((e) => [e.type, e.from, e.to, e.message]),
    [
      // a clear carries the message that was in force
      ['mode-cleared', 'offline', 'none', 'array rebuild'],
      ['drained', 'read-only', 'offline', 'array rebuild'],
      ['mode-set', 'read-only', 'offline', 'array rebuild'],
      ['drained', 'none', 'read-only', 'disk swap'],
      ['mode-set', 'none', 'read-only', 'disk swap'],
    ],
  );
  const [cleared, drained, setOffline] = items;
  assert.equal(setOffline!['auth-id'], 'root@pam');
  assert.equal(setOffline!.source, 'operator');
  assert.equal(setOffline!.severity, 'info');
  assert.equal(cleared!['auth-id'], 'root@pam');
  // PBS style epoch seconds, the drain's duration in (fractional) seconds
  for (const e of items) {
    assert.ok(
      Number.isInteger(e.time) && e.time >= start - 1 && e.time <= Date.now() / 1000 + 1,
      `${e.time}`,
    );
  }
  assert.equal(drained!.ref, setOffline!.id);
  assert.equal(typeof drained!.duration, 'number');
  assert.ok(drained!.duration! >= 0 && drained!.duration! < 30);
  assert.ok(items.every((e, i) => i === 0 || e.id < items[i - 1]!.id));
});

test('limit and before page through the history from the query, a JSON body or a form body; none is the newest 50', async () => {
  const all = await history();
  assert.equal(all.length, 5);
  const ids = all.map((e) => e.id);
  assert.deepEqual(
    (await history({ query: '?limit=2' })).map((e) => e.id),
    ids.slice(0, 2),
  );
  const next = await history({ query: `?limit=2&before=${ids[1]}` });
  assert.deepEqual(
    next.map((e) => e.id),
    ids.slice(2, 4),
  );
  const viaJson = await history({ body: { limit: 2, before: ids[1] } });
  assert.deepEqual(
    viaJson.map((e) => e.id),
    ids.slice(2, 4),
  );
  const viaForm = await history({ form: `limit=2&before=${ids[1]}` });
  assert.deepEqual(
    viaForm.map((e) => e.id),
    ids.slice(2, 4),
  );
  const emptyJson = await history({ body: {} });
  assert.deepEqual(
    emptyJson.map((e) => e.id),
    ids,
  );
  const last = await history({ query: `?before=${ids[3]}` });
  assert.deepEqual(
    last.map((e) => e.id),
    ids.slice(4),
  );
  assert.deepEqual(await history({ query: `?before=${ids[4]}` }), []);
});

test('bad parameters, unknown stores and missing privileges are refused with the PBS envelope', async () => {
  for (const query of ['?limit=1001', '?limit=0', '?limit=many', '?before=x']) {
    const res = await t.api('GET', `${HISTORY}${query}`, { auth: t.root });
    assert.equal(res.status, 400, `${query}: ${JSON.stringify(res.body)}`);
    const field = query.slice(1).split('=')[0]!;
    assert.ok(res.body.errors?.[field], `${query}: ${JSON.stringify(res.body)}`);
  }

  const big = await t.api('GET', HISTORY, { auth: t.root, body: { limit: 5000 } });
  assert.equal(big.status, 400, JSON.stringify(big.body));
  assert.ok(big.body.errors?.limit);
  const extra = await t.api('GET', HISTORY, { auth: t.root, form: 'lmit=5' });
  assert.equal(extra.status, 400, JSON.stringify(extra.body));
  assert.ok(extra.body.errors?.lmit);

  const unknown = await t.api('GET', '/admin/datastore/nosuch/maintenance-history', { auth: t.root });
  assert.equal(unknown.status, 404, JSON.stringify(unknown.body));
  assert.equal(unknown.body.data, null);
  assert.match(unknown.body.message!, /nosuch/);

  const stranger = await t.addUser('stranger@pbs');
  const denied = await t.api('GET', HISTORY, { auth: stranger });
  assert.equal(denied.status, 403, JSON.stringify(denied.body));
  assert.match(denied.body.message!, /Datastore\.Audit/);
  assert.equal((await t.api('GET', HISTORY)).status, 401);
});
