import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { Type } from 'typebox';
import { apiRoutes } from '../../src/api2/index.js';
import { ForbiddenError } from '../../src/errors.js';
import { defineRoute, filtered, type CheckedPermission } from '../../src/http/route.js';
import { startTestServer, type Auth, type TestServer } from '../helpers/https-api.js';

/** What ran, in order, for the last request. */
let calls: string[] = [];

/** A parameter-dependent check as `ownerChecked` is one: it reads a URL and a body parameter. */
const probePermission: CheckedPermission<{ store: string; ns: string; full: boolean }> = {
  checked: { path: '/probe/{store}/{ns}', privs: ['Sys.Audit'], owner: ['Sys.Modify'] },
  check({ authId, userInfo, params, parameters }) {
    calls.push('check');
    const full = userInfo.hasPrivs(authId, '/system', ['Sys.Audit']);
    if (!full && !userInfo.hasPrivs(authId, '/system', ['Sys.Modify']))
      throw new ForbiddenError('permission check failed - probe');
    return { store: params.store!, ns: String(parameters.ns ?? ''), full };
  },
};

const probes = [
  defineRoute({
    method: 'POST',
    path: '/probe/:store',
    params: Type.Object({ store: Type.String() }),
    body: Type.Object({ ns: Type.Optional(Type.String({ maxLength: 3 })) }),
    permission: probePermission,
    description: 'a route with a checked permission, for the registrar test',
    handler: ({ access }) => {
      calls.push('handler');
      return access;
    },
  }),
  defineRoute({
    method: 'GET',
    path: '/probe/:store',
    params: Type.Object({ store: Type.String() }),
    query: Type.Object({ ns: Type.Optional(Type.String({ maxLength: 3 })) }),
    permission: probePermission,
    description: 'the same check on a query parameter',
    handler: ({ access }) => access,
  }),
  defineRoute({
    method: 'GET',
    path: '/probe-filtered',
    permission: filtered('nothing to filter: a probe for the registrar test'),
    description: 'a filtered route, for the registrar test',
    handler: ({ access, authId }) => ({ access: access ?? null, authId }),
  }),
];

let t: TestServer;
let nobody: Auth;

before(async () => {
  t = await startTestServer({ prefix: 'stowage-registrar-', routes: [...apiRoutes, ...probes] });
  nobody = await t.addUser('nobody@pbs');
});

after(async () => {
  await t.close();
});

test('a checked permission runs after parameter validation and before the handler, which gets its outcome as ctx.access', async () => {
  calls = [];
  const res = await t.api('POST', '/probe/s1', { auth: t.root, body: { ns: 'abc' } });
  assert.equal(res.status, 200);
  assert.deepEqual(res.body.data, { store: 's1', ns: 'abc', full: true });
  assert.deepEqual(calls, ['check', 'handler']);

  const fromQuery = await t.api('GET', '/probe/s1?ns=xy', { auth: t.root });
  assert.deepEqual(fromQuery.body.data, { store: 's1', ns: 'xy', full: true });
});

test('a bad or unknown parameter is a 400 before the checked permission is asked', async () => {
  calls = [];
  const bad = await t.api('POST', '/probe/s1', { auth: t.root, body: { ns: 'too-long' } });
  assert.equal(bad.status, 400);
  const unknown = await t.api('POST', '/probe/s1', { auth: t.root, body: { other: 1 } });
  assert.equal(unknown.status, 400);
  assert.deepEqual(calls, []);
});

test("a checked permission's refusal is the 403 and the handler never runs", async () => {
  calls = [];
  const res = await t.api('POST', '/probe/s1', { auth: nobody, body: { ns: 'a' } });
  assert.equal(res.status, 403);
  assert.equal(res.body.message, 'permission check failed - probe');
  assert.deepEqual(calls, ['check']);
});

test('a filtered route admits every authenticated caller, with no access outcome, and nobody without credentials', async () => {
  const res = await t.api('GET', '/probe-filtered', { auth: nobody });
  assert.equal(res.status, 200);
  assert.deepEqual(res.body.data, { access: null, authId: 'nobody@pbs' });
  const anonymous = await t.api('GET', '/probe-filtered');
  assert.equal(anonymous.status, 401);
});

test('an ownerChecked route refuses a caller without either privilege with 403 before admission, and admits the others (503 in maintenance)', async () => {
  await t.addBareDatastore('offline1', { 'maintenance-mode': 'offline,message="disk swap"' });
  const backup = await t.addUser('backup1@pbs', [{ path: '/datastore/offline1', role: 'DatastoreBackup' }]);
  const query = 'backup-type=host&backup-id=h1&backup-time=1717236000';
  const refused = await t.api('GET', `/admin/datastore/offline1/notes?${query}`, { auth: nobody });
  assert.deepEqual(
    [refused.status, refused.body.message],
    [403, 'permission check failed - missing Datastore.Audit|Datastore.Backup on /datastore/offline1'],
  );
  const inNs = await t.api('GET', `/admin/datastore/offline1/notes?ns=team&${query}`, { auth: nobody });
  assert.equal(
    inNs.body.message,
    'permission check failed - missing Datastore.Audit|Datastore.Backup on /datastore/offline1/team',
  );
  const admitted = await t.api('GET', `/admin/datastore/offline1/notes?${query}`, { auth: backup });
  assert.deepEqual(
    [admitted.status, admitted.body.message],
    [503, "datastore 'offline1' is unavailable: offline maintenance mode: disk swap"],
  );
});
