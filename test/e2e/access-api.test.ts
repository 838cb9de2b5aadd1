import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { startTestServer, type ApiReply, type Auth, type TestServer } from '../helpers/https-api.js';

let t: TestServer;

before(async () => {
  t = await startTestServer({ prefix: 'stowage-e2e-access-' });
});

after(async () => {
  await t?.close();
});

/** Every user made by `t.addUser` gets this password. */
const passwordOf = (userid: string) => `pw-${userid.replace(/[^a-z0-9]/gi, '')}-1`;

async function makeToken(owner: Auth, userid: string, name: string): Promise<Auth> {
  const res = await t.api('POST', `/access/users/${userid}/token/${name}`, { auth: owner, body: {} });
  assert.equal(res.status, 200, JSON.stringify(res.body));
  const { tokenid, value } = res.body.data as { tokenid: string; value: string };
  return { token: `${tokenid}:${value}` };
}

async function grant(path: string, role: string, authId: string, propagate = true): Promise<void> {
  const res = await t.api('PUT', '/access/acl', {
    auth: t.root,
    body: { path, role, 'auth-id': authId, propagate },
  });
  assert.equal(res.status, 200, JSON.stringify(res.body));
}

const shadow = () => readFileSync(join(t.paths.configDir, 'shadow.json'), 'utf8');
const loginStatus = async (username: string, password: string) =>
  (await t.api('POST', '/access/ticket', { body: { username, password } })).status;

function assertForbidden(res: ApiReply, pattern: RegExp): void {
  assert.equal(res.status, 403, JSON.stringify(res.body));
  assert.match(res.body.message!, /^permission check failed - /);
  assert.match(res.body.message!, pattern);
}

// ---- GET /access/roles ------------------------------------------------------------------------

test('the role list has every PBS 4 role with its privileges in PBS order and its description', async () => {
  const user = await t.addUser('roles@pbs');
  const res = await t.api('GET', '/access/roles', { auth: user });
  assert.equal(res.status, 200, 'any authenticated user may read the roles');
  const roles = res.body.data as Array<{ roleid: string; privs: string[]; comment: string }>;
  assert.equal(roles.length, 18);
  const byId = new Map(roles.map((r) => [r.roleid, r]));
  for (const r of roles) assert.deepEqual(Object.keys(r).sort(), ['comment', 'privs', 'roleid']);
  assert.deepEqual(byId.get('DatastoreReader'), {
    roleid: 'DatastoreReader',
    privs: ['Datastore.Audit', 'Datastore.Read', 'Datastore.Verify'],
    comment: 'Datastore Reader (inspect datastore content and do restores)',
  });
  assert.deepEqual(byId.get('RemoteDatastoreAdmin')?.privs, [
    'Remote.Audit',
    'Remote.DatastoreBackup',
    'Remote.DatastoreModify',
    'Remote.DatastorePrune',
  ]);
  assert.deepEqual(byId.get('NoAccess'), { roleid: 'NoAccess', privs: [], comment: 'Disable Access' });
  const admin = byId.get('Admin')!;
  assert.equal(admin.privs.length, 23);
  assert.deepEqual(admin.privs.slice(0, 3), ['Sys.Audit', 'Sys.Modify', 'Sys.PowerManagement']);
  assert.equal(admin.privs.at(-1), 'Realm.Allocate');
});

test('the role list needs authentication', async () => {
  assert.equal((await t.api('GET', '/access/roles')).status, 401);
});

// ---- GET /access/permissions ------------------------------------------------------------------

test('without parameters the caller gets its privileges on the default paths and on every ACL path where it holds any', async () => {
  const carol = await t.addUser('carol@pbs');
  await grant('/datastore/store1', 'DatastoreBackup', 'carol@pbs');
  await grant('/system', 'Audit', 'carol@pbs', false);
  // an ACL path of somebody else, where carol holds nothing, must not show up
  await t.addUser('other@pbs');
  await grant('/remote/secret', 'RemoteAdmin', 'other@pbs');

  const res = await t.api('GET', '/access/permissions', { auth: carol });
  assert.equal(res.status, 200, JSON.stringify(res.body));
  assert.deepEqual(res.body.data, {
    '/datastore/store1': { 'Datastore.Backup': true },
    '/system': { 'Sys.Audit': false, 'Datastore.Audit': false },
  });
});

test('root@pam holds every privilege, propagating, on each default path', async () => {
  const res = await t.api('GET', '/access/permissions', { auth: t.root });
  assert.equal(res.status, 200);
  const data = res.body.data as Record<string, Record<string, boolean>>;
  for (const path of ['/', '/access', '/datastore', '/remote', '/system']) {
    assert.equal(Object.keys(data[path] ?? {}).length, 23, path);
    assert.ok(Object.values(data[path]!).every((v) => v === true));
  }
});

test('`path` limits the answer to that path, with privileges inherited from above, sent in the query', async () => {
  const dan = await t.addUser('dan@pbs');
  await grant('/datastore', 'DatastoreReader', 'dan@pbs');
  const res = await t.api('GET', '/access/permissions?path=/datastore/store9/ns1', { auth: dan });
  assert.equal(res.status, 200, JSON.stringify(res.body));
  assert.deepEqual(res.body.data, {
    '/datastore/store9/ns1': { 'Datastore.Audit': true, 'Datastore.Read': true, 'Datastore.Verify': true },
  });
  const nothing = await t.api('GET', '/access/permissions?path=/system', { auth: dan });
  assert.deepEqual(nothing.body.data, {}, 'a path without privileges is left out');
});

test("a token's permissions are its own ACL intersected with its owner's, and its owner may list them", async () => {
  const erin = await t.addUser('erin@pbs');
  await grant('/datastore/s1', 'DatastoreAdmin', 'erin@pbs', false);
  const token = await makeToken(erin, 'erin@pbs', 'ci');
  await grant('/datastore/s1', 'DatastoreBackup', 'erin@pbs!ci');
  await grant('/system', 'Audit', 'erin@pbs!ci');

  const expected = { '/datastore/s1': { 'Datastore.Backup': false } };
  const own = await t.api('GET', '/access/permissions', { auth: token });
  assert.equal(own.status, 200, JSON.stringify(own.body));
  assert.deepEqual(
    own.body.data,
    expected,
    "nothing on /system (erin has nothing there); not propagating because erin's role does not",
  );
  const byOwner = await t.api('GET', '/access/permissions?auth-id=' + encodeURIComponent('erin@pbs!ci'), {
    auth: erin,
  });
  assert.equal(byOwner.status, 200, JSON.stringify(byOwner.body));
  assert.deepEqual(byOwner.body.data, expected);
});

test('listing the permissions of another auth id needs Sys.Audit on /access', async () => {
  const frank = await t.addUser('frank@pbs');
  const target = 'carol@pbs';
  const denied = await t.api('GET', `/access/permissions?auth-id=${target}`, { auth: frank });
  assertForbidden(denied, /missing Sys\.Audit on \/access/);
  assert.match(denied.body.message!, /carol@pbs/);
  assert.equal(denied.body.data, null);

  // nor may a token list its owner, nor a user another user's token
  const token = await makeToken(frank, 'frank@pbs', 'probe');
  assert.equal((await t.api('GET', '/access/permissions?auth-id=frank@pbs', { auth: token })).status, 403);
  const foreign = await t.api('GET', '/access/permissions?auth-id=' + encodeURIComponent('erin@pbs!ci'), {
    auth: frank,
  });
  assert.equal(foreign.status, 403);

  const auditor = await t.addUser('auditor@pbs');
  await grant('/access', 'Audit', 'auditor@pbs');
  const ok = await t.api('GET', `/access/permissions?auth-id=${target}&path=/datastore/store1`, {
    auth: auditor,
  });
  assert.equal(ok.status, 200, JSON.stringify(ok.body));
  assert.deepEqual(ok.body.data, { '/datastore/store1': { 'Datastore.Backup': true } });
});

test('a malformed auth-id or path is a 400 naming the parameter', async () => {
  const bad = await t.api('GET', '/access/permissions?auth-id=no-realm', { auth: t.root });
  assert.equal(bad.status, 400);
  assert.match(bad.body.message!, /'auth-id'/);
  const badPath = await t.api('GET', '/access/permissions?path=datastore', { auth: t.root });
  assert.equal(badPath.status, 400);
  assert.match(badPath.body.message!, /'path'/);
  const unknown = await t.api('GET', '/access/permissions?user=carol@pbs', { auth: t.root });
  assert.equal(unknown.status, 400);
  assert.match(unknown.body.message!, /'user'/);
});

// ---- PUT /access/password ---------------------------------------------------------------------

test('a user changes its own password with a JSON body; the new one logs in and the old one not', async () => {
  const gina = await t.addUser('gina@pbs');
  const old = passwordOf('gina@pbs');
  const res = await t.api('PUT', '/access/password', {
    auth: gina,
    body: { userid: 'gina@pbs', password: 'gina-new-secret', 'confirmation-password': old },
  });
  assert.equal(res.status, 200, JSON.stringify(res.body));
  assert.equal(res.body.data, null);
  assert.equal(await loginStatus('gina@pbs', 'gina-new-secret'), 200);
  assert.equal(await loginStatus('gina@pbs', old), 401);
  assert.doesNotMatch(shadow(), /gina-new-secret/, 'only a hash is stored');
});

test('a user changes its own password with a form body, as the web UI and proxmoxer send it', async () => {
  const hank = await t.addUser('hank@pbs');
  const form = new URLSearchParams({
    userid: 'hank@pbs',
    password: 'hank-form-secret',
    'confirmation-password': passwordOf('hank@pbs'),
  }).toString();
  const res = await t.api('PUT', '/access/password', { auth: hank, form });
  assert.equal(res.status, 200, JSON.stringify(res.body));
  assert.equal(await loginStatus('hank@pbs', 'hank-form-secret'), 200);
});

test('a user changes its own password with the parameters in the query string, as PBS accepts for a PUT without a JSON body', async () => {
  const ivy = await t.addUser('ivy@pbs');
  const q = new URLSearchParams({
    userid: 'ivy@pbs',
    password: 'ivy-query-secret',
    'confirmation-password': passwordOf('ivy@pbs'),
  });
  const res = await t.api('PUT', `/access/password?${q}`, { auth: ivy });
  assert.equal(res.status, 200, JSON.stringify(res.body));
  assert.equal(await loginStatus('ivy@pbs', 'ivy-query-secret'), 200);
});

test('changing a password without the current one, or with a wrong one, changes nothing', async () => {
  const jack = await t.addUser('jack@pbs');
  const before = shadow();
  const missing = await t.api('PUT', '/access/password', {
    auth: jack,
    body: { userid: 'jack@pbs', password: 'jack-new-secret' },
  });
  assert.equal(missing.status, 400);
  assert.match(missing.body.message!, /^parameter verification failed - 'confirmation-password'/);
  const wrong = await t.api('PUT', '/access/password', {
    auth: jack,
    body: { userid: 'jack@pbs', password: 'jack-new-secret', 'confirmation-password': 'not-my-password' },
  });
  assert.equal(wrong.status, 401);
  assert.equal(wrong.body.message, 'authentication failed');
  assert.equal(shadow(), before);
  assert.equal(await loginStatus('jack@pbs', passwordOf('jack@pbs')), 200);
});

test("a user without Permissions.Modify on / cannot change another user's password", async () => {
  const kim = await t.addUser('kim@pbs');
  await t.addUser('victim@pbs');
  // Permissions.Modify on /access/users alone is not enough here: PBS checks it on /
  await grant('/access/users', 'Admin', 'kim@pbs');
  const before = shadow();
  const res = await t.api('PUT', '/access/password', {
    auth: kim,
    body: { userid: 'victim@pbs', password: 'taken-over-1', 'confirmation-password': passwordOf('kim@pbs') },
  });
  assertForbidden(res, /missing Permissions\.Modify on \/$/);
  assert.equal(shadow(), before);
  assert.equal(await loginStatus('victim@pbs', passwordOf('victim@pbs')), 200);
});

test("a user with Permissions.Modify on / changes a pbs user's password, but not root@pam's", async () => {
  const lea = await t.addUser('lea@pbs');
  await t.addUser('mo@pbs');
  await grant('/', 'Admin', 'lea@pbs');
  const confirmation = passwordOf('lea@pbs');
  const res = await t.api('PUT', '/access/password', {
    auth: lea,
    body: { userid: 'mo@pbs', password: 'mo-reset-by-lea', 'confirmation-password': confirmation },
  });
  assert.equal(res.status, 200, JSON.stringify(res.body));
  assert.equal(await loginStatus('mo@pbs', 'mo-reset-by-lea'), 200);

  const before = shadow();
  const pam = await t.api('PUT', '/access/password', {
    auth: lea,
    body: { userid: 'root@pam', password: 'root-taken-over', 'confirmation-password': confirmation },
  });
  assertForbidden(pam, /only root@pam may change the password of 'root@pam'/);
  assert.equal(shadow(), before);

  const ghost = await t.api('PUT', '/access/password', {
    auth: lea,
    body: { userid: 'ghost@pbs', password: 'ghost-secret', 'confirmation-password': confirmation },
  });
  assert.equal(ghost.status, 404);
  assert.equal(ghost.body.message, "user 'ghost@pbs' does not exist.");
});

test("root@pam changes its own and others' passwords without a confirmation password", async () => {
  await t.addUser('nina@pbs');
  const res = await t.api('PUT', '/access/password', {
    auth: t.root,
    body: { userid: 'nina@pbs', password: 'nina-by-root-1' },
  });
  assert.equal(res.status, 200, JSON.stringify(res.body));
  assert.equal(await loginStatus('nina@pbs', 'nina-by-root-1'), 200);

  const self = await t.api('PUT', '/access/password', {
    auth: t.root,
    body: { userid: 'root@pam', password: 'root-secret-2' },
  });
  assert.equal(self.status, 200, JSON.stringify(self.body));
  assert.equal(await loginStatus('root@pam', 'root-secret-2'), 200);
  assert.equal(await loginStatus('root@pam', t.rootPassword), 401);
  // put it back for the other tests
  const back = await t.api('PUT', '/access/password', {
    auth: t.root,
    body: { userid: 'root@pam', password: t.rootPassword },
  });
  assert.equal(back.status, 200);
});

test('an API token cannot change any password, not even its owner’s', async () => {
  const olga = await t.addUser('olga@pbs');
  await grant('/', 'Admin', 'olga@pbs');
  const token = await makeToken(olga, 'olga@pbs', 'pw');
  await grant('/', 'Admin', 'olga@pbs!pw');
  const before = shadow();
  const res = await t.api('PUT', '/access/password', {
    auth: token,
    body: { userid: 'olga@pbs', password: 'olga-by-token', 'confirmation-password': passwordOf('olga@pbs') },
  });
  assertForbidden(res, /API tokens cannot access this API endpoint/);
  assert.equal(shadow(), before);
});

test('bad password parameters are a 400 naming the parameter and change nothing', async () => {
  await t.addUser('pia@pbs');
  const before = shadow();
  const cases: Array<[Record<string, unknown>, string]> = [
    [{ userid: 'pia@pbs', password: 'short' }, 'password'], // PBS 4: at least 8 characters
    [{ userid: 'pia@pbs', password: 'x'.repeat(65) }, 'password'],
    [{ userid: 'pia@pbs', password: 'tab\there-in-it' }, 'password'],
    [{ userid: 'pia', password: 'long-enough-1' }, 'userid'],
    [{ password: 'long-enough-1' }, 'userid'],
    [{ userid: 'pia@pbs' }, 'password'],
    [{ userid: 'pia@pbs', password: 'long-enough-1', extra: 1 }, 'extra'],
  ];
  for (const [body, param] of cases) {
    const res = await t.api('PUT', '/access/password', { auth: t.root, body });
    assert.equal(res.status, 400, `${JSON.stringify(body)}: ${JSON.stringify(res.body)}`);
    assert.match(res.body.message!, new RegExp(`'${param}'`), JSON.stringify(body));
  }
  const form = await t.api('PUT', '/access/password', {
    auth: t.root,
    form: 'userid=pia%40pbs&password=short',
  });
  assert.equal(form.status, 400);
  assert.match(form.body.message!, /'password'/);
  assert.equal(shadow(), before);
  assert.equal(await loginStatus('pia@pbs', passwordOf('pia@pbs')), 200);
});

test('a user of a realm without local passwords gets a 400 naming userid', async () => {
  // user.cfg may hold @pam users (imported from PBS); Stowage cannot store their passwords
  const { updateUserConfig } = await import('../../src/config/user-config.js');
  await updateUserConfig(t.paths.configDir, (cfg) => {
    cfg.users.set('backup@pam', { userid: 'backup@pam' });
  });
  const res = await t.api('PUT', '/access/password', {
    auth: t.root,
    body: { userid: 'backup@pam', password: 'pam-user-secret' },
  });
  assert.equal(res.status, 400);
  assert.match(
    res.body.message!,
    /^parameter verification failed - 'userid': realm 'pam' has no local passwords/,
  );
  assert.doesNotMatch(shadow(), /backup@pam/);
});

// ---- GET /version -----------------------------------------------------------------------------

test('the version answers any authenticated user or token with version, release and repoid strings', async () => {
  const quinn = await t.addUser('quinn@pbs');
  const token = await makeToken(quinn, 'quinn@pbs', 'v');
  for (const auth of [quinn, token]) {
    const res = await t.api('GET', '/version', { auth });
    assert.equal(res.status, 200, JSON.stringify(res.body));
    const data = res.body.data as Record<string, unknown>;
    assert.deepEqual(Object.keys(data).sort(), ['release', 'repoid', 'version']);
    // clients split `version` at the dot and parse `release` as a number (pbs-api-types ApiVersion)
    assert.match(data.version as string, /^\d+\.\d+$/);
    assert.match(data.release as string, /^\d+$/);
    assert.equal(typeof data.repoid, 'string');
  }
  assert.equal((await t.api('GET', '/version')).status, 401);
});
