import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { startTestServer, type Auth, type TestServer } from '../helpers/https-api.js';
import { writeSnapshots } from '../helpers/snapshot-fixture.js';

let t: TestServer;
let storePath: string;
let alice: Auth;
let bob: Auth;
let nobody: Auth;
const STORE = 'owners';
const T1 = 1717236000;
const PATH = `/admin/datastore/${STORE}/change-owner`;

before(async () => {
  t = await startTestServer({ prefix: 'stowage-e2e-owner-' });
  storePath = await t.addBareDatastore(STORE);
  await writeSnapshots(t.server.context.datastores, STORE, [
    { type: 'vm', id: '100', time: T1, owner: 'root@pam' },
    { type: 'host', id: 'alice', time: T1, owner: 'alice@pbs' },
    { type: 'host', id: 'bob', time: T1, owner: 'bob@pbs' },
    { type: 'ct', id: '300', time: T1, owner: 'root@pam', ns: 'team' },
  ]);
  alice = await t.addUser('alice@pbs', [{ path: `/datastore/${STORE}`, role: 'DatastoreBackup' }]);
  bob = await t.addUser('bob@pbs', [{ path: `/datastore/${STORE}`, role: 'DatastoreBackup' }]);
  nobody = await t.addUser('nobody@pbs', [{ path: `/datastore/${STORE}`, role: 'DatastoreAudit' }]);
  for (const token of ['alice@pbs/token/tok', 'alice@pbs/token/tok2', 'bob@pbs/token/tok']) {
    const res = await t.api('POST', `/access/users/${token}`, { auth: t.root, body: {} });
    assert.equal(res.status, 200, `${token}: ${JSON.stringify(res.body)}`);
  }
  const disabled = await t.api('POST', '/access/users', {
    auth: t.root,
    body: { userid: 'gone@pbs', enable: false },
  });
  assert.equal(disabled.status, 200, JSON.stringify(disabled.body));
});

after(async () => {
  await t?.close();
});

function owner(group: string, ns = ''): string {
  const dir = ns ? join(storePath, 'ns', ns, group) : join(storePath, group);
  return readFileSync(join(dir, 'owner'), 'utf8');
}

async function setMode(mode: string | null): Promise<void> {
  const body = mode === null ? { delete: 'maintenance-mode' } : { 'maintenance-mode': mode };
  const res = await t.api('PUT', `/config/datastore/${STORE}`, { auth: t.root, body });
  assert.equal(res.status, 200, JSON.stringify(res.body));
}

test('Datastore.Modify gives a group to another user, with the parameters in a JSON body, a form body or the query', async () => {
  const json = await t.api('POST', PATH, {
    auth: t.root,
    body: { 'backup-type': 'vm', 'backup-id': '100', 'new-owner': 'bob@pbs' },
  });
  assert.equal(json.status, 200, JSON.stringify(json.body));
  assert.equal(json.body.data, null);
  assert.equal(owner('vm/100'), 'bob@pbs\n');

  const form = await t.api('POST', PATH, {
    auth: t.root,
    form: 'backup-type=vm&backup-id=100&new-owner=alice%40pbs%21tok',
  });
  assert.equal(form.status, 200, JSON.stringify(form.body));
  assert.equal(owner('vm/100'), 'alice@pbs!tok\n');

  const query = await t.api('POST', `${PATH}?backup-type=ct&backup-id=300&ns=team&new-owner=bob%40pbs`, {
    auth: t.root,
  });
  assert.equal(query.status, 200, JSON.stringify(query.body));
  assert.equal(owner('ct/300', 'team'), 'bob@pbs\n');
});

test('with Datastore.Backup only, the owner moves a group between itself and its own tokens, and nowhere else', async () => {
  const move = (auth: Auth, id: string, to: string) =>
    t.api('POST', PATH, { auth, body: { 'backup-type': 'host', 'backup-id': id, 'new-owner': to } });

  let res = await move(alice, 'alice', 'alice@pbs!tok');
  assert.equal(res.status, 200, JSON.stringify(res.body));
  assert.equal(owner('host/alice'), 'alice@pbs!tok\n');
  res = await move(alice, 'alice', 'alice@pbs!tok2');
  assert.equal(res.status, 200, 'token to another token of the same user');
  res = await move(alice, 'alice', 'alice@pbs');
  assert.equal(res.status, 200, 'token back to its user');
  assert.equal(owner('host/alice'), 'alice@pbs\n');

  const refused: Array<[Auth, string, string]> = [
    [alice, 'alice', 'bob@pbs'], // user to user
    [alice, 'alice', 'bob@pbs!tok'], // to someone else's token
    [bob, 'alice', 'bob@pbs'], // not the owner
  ];
  for (const [auth, id, to] of refused) {
    res = await move(auth, id, to);
    assert.equal(res.status, 403, `${id} → ${to}: ${JSON.stringify(res.body)}`);
    assert.match(
      res.body.message!,
      auth === alice
        ? new RegExp(
            `^alice@pbs does not have permission to change owner of backup group 'host/alice' to ${to.replace('!', '\\!')}$`,
          )
        : /^bob@pbs does not have permission to change owner of backup group 'host\/alice' to bob@pbs$/,
    );
  }
  assert.equal(owner('host/alice'), 'alice@pbs\n', 'refused moves changed nothing');
});

test('a caller with neither Datastore.Modify nor Datastore.Backup gets 403 naming both', async () => {
  const res = await t.api('POST', PATH, {
    auth: nobody,
    body: { 'backup-type': 'host', 'backup-id': 'bob', 'new-owner': 'nobody@pbs' },
  });
  assert.equal(res.status, 403);
  assert.equal(
    res.body.message,
    `permission check failed - missing Datastore.Modify|Datastore.Backup on /datastore/${STORE}`,
  );
  assert.equal(owner('host/bob'), 'bob@pbs\n');
});

test('the new owner must be an existing, enabled user or token; bad input is 400 naming the parameter', async () => {
  const cases: Array<[Record<string, unknown>, number, RegExp, string?]> = [
    [{ 'new-owner': 'ghost@pbs' }, 400, /^user 'ghost@pbs' is inactive or non-existent$/],
    [{ 'new-owner': 'gone@pbs' }, 400, /^user 'gone@pbs' is inactive or non-existent$/],
    [{ 'new-owner': 'bob@pbs!nope' }, 400, /^API token 'bob@pbs!nope' is inactive or non-existent$/],
    [{ 'new-owner': 'no-realm' }, 400, /'new-owner'/, 'new-owner'],
    [{ 'new-owner': undefined }, 400, /'new-owner': parameter is missing/, 'new-owner'],
    [{ 'new-owner': 'bob@pbs', 'backup-id': '../x' }, 400, /'backup-id'/, 'backup-id'],
    [{ 'new-owner': 'bob@pbs', 'backup-type': 'disk' }, 400, /'backup-type'/, 'backup-type'],
    [{ 'new-owner': 'bob@pbs', ns: 'a/../b' }, 400, /ns/],
    [{ 'new-owner': 'bob@pbs', 'backup-id': 'missing' }, 404, /backup group 'host\/missing' does not exist/],
  ];
  for (const [extra, status, message, param] of cases) {
    const body = { 'backup-type': 'host', 'backup-id': 'bob', ...extra };
    const res = await t.api('POST', PATH, { auth: t.root, body });
    assert.equal(res.status, status, `${JSON.stringify(extra)}: ${JSON.stringify(res.body)}`);
    assert.match(res.body.message!, message);
    if (param) assert.ok(res.body.errors?.[param], `errors names ${param}: ${JSON.stringify(res.body)}`);
  }
  assert.equal(owner('host/bob'), 'bob@pbs\n', 'nothing was changed');
});

test('changing an owner is a write: refused with the message in read-only maintenance and offline', async () => {
  for (const [mode, message] of [
    ['read-only,message="disk swap"', 'read-only maintenance mode: disk swap'],
    ['offline', 'offline maintenance mode'],
  ]) {
    await setMode(mode!);
    try {
      const res = await t.api('POST', PATH, {
        auth: t.root,
        body: { 'backup-type': 'host', 'backup-id': 'bob', 'new-owner': 'alice@pbs' },
      });
      assert.equal(res.status, 503, JSON.stringify(res.body));
      assert.equal(res.body.message, `datastore '${STORE}' is unavailable: ${message}`);
    } finally {
      await setMode(null);
    }
  }
  assert.equal(owner('host/bob'), 'bob@pbs\n');
});
