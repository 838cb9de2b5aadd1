import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { request as httpsRequest } from 'node:https';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { RunningServer } from '../../src/server/server.js';
import {
  startTestServer,
  type ApiReply,
  type Auth,
  type RequestOptions,
  type TestServer,
} from '../helpers/https-api.js';

const ROOT_PASSWORD = 'root-secret-1';
let testServer: TestServer;
let dir: string;
let server: RunningServer;
let announced: string[];

/** One HTTPS request against the server, certificate accepted by pinning the printed fingerprint. */
function api(method: string, path: string, opts: RequestOptions = {}): Promise<ApiReply> {
  return testServer.api(method, path, opts);
}

async function login(username: string, password: string): Promise<Auth> {
  const res = await api('POST', '/access/ticket', { body: { username, password } });
  assert.equal(res.status, 200, JSON.stringify(res.body));
  const data = res.body.data as { ticket: string; CSRFPreventionToken: string; username: string };
  assert.equal(data.username, username);
  return { ticket: data.ticket, csrf: data.CSRFPreventionToken };
}

let root: Auth;

before(async () => {
  testServer = await startTestServer({ prefix: 'stowage-e2e-auth-', rootPassword: ROOT_PASSWORD });
  ({ dir, server, announced } = testServer);
  root = await login('root@pam', ROOT_PASSWORD);
});

after(async () => {
  await testServer?.close();
});

test('the server prints the certificate fingerprint it serves and creates its key files', async () => {
  assert.match(server.fingerprint, /^([0-9a-f]{2}:){31}[0-9a-f]{2}$/);
  assert.deepEqual(announced, [`fingerprint: ${server.fingerprint}`]);
  const res = await api('GET', '/version', { auth: root });
  assert.equal(res.fingerprint, server.fingerprint);
  assert.equal(res.status, 200);
  assert.deepEqual(Object.keys(res.body.data as object).sort(), ['release', 'repoid', 'version']);
  const cfg = join(dir, 'etc');
  assert.match(readFileSync(join(cfg, 'user.cfg'), 'utf8'), /^user: root@pam$/m);
  assert.match(readFileSync(join(cfg, 'authkey.key'), 'utf8'), /BEGIN PRIVATE KEY/);
  assert.doesNotMatch(readFileSync(join(cfg, 'shadow.json'), 'utf8'), new RegExp(ROOT_PASSWORD));
});

test('a ticket from login authenticates GETs through either cookie name', async () => {
  assert.match(root.ticket!, /^PBS:root@pam:[0-9A-F]{8}::/);
  for (const hostCookie of [false, true]) {
    const res = await api('GET', '/access/users', { auth: { ticket: root.ticket, hostCookie } });
    assert.equal(res.status, 200);
    assert.match(res.body.digest as string, /^[0-9a-f]{64}$/);
  }
});

test('requests without credentials, with a wrong password or a forged ticket get 401 authentication failed', async () => {
  const none = await api('GET', '/version');
  assert.equal(none.status, 401);
  assert.equal(none.body.data, null);
  assert.match(none.body.message!, /^authentication failed/);
  const wrong = await api('POST', '/access/ticket', {
    body: { username: 'root@pam', password: 'nope-nope' },
  });
  assert.equal(wrong.status, 401);
  assert.equal(wrong.body.message, 'authentication failed');
  const unknown = await api('POST', '/access/ticket', {
    body: { username: 'ghost@pbs', password: 'nope-nope' },
  });
  assert.deepEqual([unknown.status, unknown.body.message], [401, 'authentication failed']);
  const forged = root.ticket!.replace('root@pam', 'evil@pbs');
  const res = await api('GET', '/version', { auth: { ticket: forged } });
  assert.deepEqual([res.status, res.body.message], [401, 'authentication failed']);
});

test('a ticket passed as the password renews it', async () => {
  const res = await api('POST', '/access/ticket', { body: { username: 'root@pam', password: root.ticket } });
  assert.equal(res.status, 200);
  assert.match((res.body.data as { ticket: string }).ticket, /^PBS:root@pam:/);
  const other = await api('POST', '/access/ticket', {
    body: { username: 'alice@pbs', password: root.ticket },
  });
  assert.equal(other.status, 401, "a ticket cannot be renewed as another user's");
});

test('a POST with a ticket but without the CSRF token is refused with 401', async () => {
  const res = await api('POST', '/access/users', {
    auth: { ticket: root.ticket },
    body: { userid: 'x1@pbs' },
  });
  assert.equal(res.status, 401);
  assert.equal(res.body.message, 'authentication failed - missing CSRF prevention token');
  const bad = await api('POST', '/access/users', {
    auth: { ticket: root.ticket, csrf: '00000000:abc' },
    body: { userid: 'x1@pbs' },
  });
  assert.equal(bad.status, 401);
  assert.equal(bad.body.message, 'authentication failed - invalid CSRF prevention token');
  const list = await api('GET', '/access/users', { auth: root });
  assert.ok(!(list.body.data as Array<{ userid: string }>).some((u) => u.userid === 'x1@pbs'));
});

test('bad parameters are a 400 naming the parameter', async () => {
  const res = await api('POST', '/access/users', { auth: root, body: { userid: 'no realm' } });
  assert.equal(res.status, 400);
  assert.match(res.body.message!, /^parameter verification failed - 'userid': /);
  assert.ok(res.body.errors?.userid);
  const missing = await api('PUT', '/access/acl', { auth: root, body: { role: 'Admin' } });
  assert.equal(missing.status, 400);
  assert.match(missing.body.message!, /'path': parameter is missing/);
  const extra = await api('GET', '/nodes/localhost/tasks?limitt=5', { auth: root });
  assert.equal(extra.status, 400);
  assert.match(extra.body.message!, /'limitt': schema does not allow additional properties/);
  const badNumber = await api('GET', '/nodes/localhost/tasks?limit=many', { auth: root });
  assert.equal(badNumber.status, 400);
  assert.match(badNumber.body.message!, /'limit': /);
  const notFound = await api('GET', '/no/such/path', { auth: root });
  assert.equal(notFound.status, 404);
  assert.equal(notFound.body.message, "Path '/api2/json/no/such/path' not found.");
});

test('users created by root can log in, and lack privileges until the ACL grants them', async () => {
  const created = await api('POST', '/access/users', {
    auth: root,
    body: { userid: 'alice@pbs', password: 'alice-pw-1', comment: 'Alice' },
  });
  assert.equal(created.status, 200, JSON.stringify(created.body));
  assert.equal(created.body.data, null);
  const dup = await api('POST', '/access/users', { auth: root, body: { userid: 'alice@pbs' } });
  assert.equal(dup.status, 409);
  const alice = await login('alice@pbs', 'alice-pw-1');

  const own = await api('GET', '/access/users', { auth: alice });
  assert.deepEqual(
    (own.body.data as Array<{ userid: string }>).map((u) => u.userid),
    ['alice@pbs'],
    'without Sys.Audit a user sees only itself',
  );
  const other = await api('GET', '/access/users/root@pam', { auth: alice });
  assert.equal(other.status, 403);
  assert.equal(other.body.message, 'permission check failed - missing Sys.Audit on /access/users');
  const create = await api('POST', '/access/users', { auth: alice, body: { userid: 'mallory@pbs' } });
  assert.equal(create.status, 403);
  assert.equal(create.body.message, 'permission check failed - missing Permissions.Modify on /access/users');

  const grant = await api('PUT', '/access/acl', {
    auth: root,
    form: 'path=%2Faccess%2Fusers&role=Audit&auth-id=alice%40pbs&propagate=1',
  });
  assert.equal(grant.status, 200, JSON.stringify(grant.body));
  assert.match(readFileSync(join(dir, 'etc', 'acl.cfg'), 'utf8'), /^acl:1:\/access\/users:alice@pbs:Audit$/m);
  const allowed = await api('GET', '/access/users/root@pam', { auth: alice });
  assert.equal(allowed.status, 200);
  assert.equal((allowed.body.data as { userid: string }).userid, 'root@pam');
});

test('an API token authenticates without CSRF and is limited to the intersection with its owner', async () => {
  await api('POST', '/access/users', { auth: root, body: { userid: 'bob@pbs', password: 'bob-pw-12' } });
  const bob = await login('bob@pbs', 'bob-pw-12');
  const made = await api('POST', '/access/users/bob@pbs/token/client', {
    auth: bob,
    body: { comment: 'ci' },
  });
  assert.equal(made.status, 200, JSON.stringify(made.body));
  const { tokenid, value } = made.body.data as { tokenid: string; value: string };
  assert.equal(tokenid, 'bob@pbs!client');
  assert.doesNotMatch(readFileSync(join(dir, 'etc', 'token.shadow'), 'utf8'), new RegExp(value));
  const token = { token: `${tokenid}:${value}` };

  // the token gets Audit on /access/users, its owner does not: the intersection is empty
  const grantToken = await api('PUT', '/access/acl', {
    auth: bob,
    body: { path: '/access/users', role: 'Audit', 'auth-id': tokenid },
  });
  assert.equal(grantToken.status, 200, 'a user may edit the ACL of its own token');
  const denied = await api('GET', '/access/users/root@pam', { auth: token });
  assert.equal(denied.status, 403);
  assert.equal(denied.body.message, 'permission check failed - missing Sys.Audit on /access/users');
  const notOthers = await api('PUT', '/access/acl', {
    auth: bob,
    body: { path: '/', role: 'Admin', 'auth-id': 'bob@pbs' },
  });
  assert.equal(notOthers.status, 403, 'but not its own user entry');

  // once the owner has it too, the token has it
  await api('PUT', '/access/acl', {
    auth: root,
    body: { path: '/access', role: 'Audit', 'auth-id': 'bob@pbs' },
  });
  const ok = await api('GET', '/access/users/root@pam', { auth: token });
  assert.equal(ok.status, 200);
  const post = await api('POST', '/access/users/bob@pbs/token/second', {
    auth: { token: `${tokenid}:${value}` },
  });
  assert.equal(post.status, 403, 'the token passes auth without CSRF but is not its own user');

  // the `=` separator works too, a wrong secret does not
  const eq = await new Promise<number>((resolve, reject) => {
    const req = httpsRequest(
      new URL('/api2/json/version', server.url),
      { headers: { authorization: `PBSAPIToken=${tokenid}:${value}` }, rejectUnauthorized: false },
      (res) => {
        res.resume();
        resolve(res.statusCode!);
      },
    );
    req.on('error', reject);
    req.end();
  });
  assert.equal(eq, 200);
  const wrong = await api('GET', '/version', { auth: { token: `${tokenid}:not-the-secret` } });
  assert.deepEqual([wrong.status, wrong.body.message], [401, 'authentication failed']);

  const del = await api('DELETE', '/access/users/bob@pbs/token/client', { auth: bob });
  assert.equal(del.status, 200);
  const gone = await api('GET', '/version', { auth: token });
  assert.equal(gone.status, 401);
  assert.doesNotMatch(readFileSync(join(dir, 'etc', 'acl.cfg'), 'utf8'), /bob@pbs!client/);
});

test('the task list, status and log have the PBS shapes and users only see their own tasks', async () => {
  const { tasks } = server.context;
  const upid = tasks.spawnTask('garbage_collection', 'store1', 'root@pam', (task) => {
    task.log('starting garbage collection');
    task.warn('something odd');
  });
  assert.equal(await tasks.waitForTask(upid), 'WARNINGS: 1');

  const list = await api('GET', '/nodes/localhost/tasks?limit=10', { auth: root });
  assert.equal(list.status, 200);
  const item = (list.body.data as Array<Record<string, unknown>>).find((t) => t.upid === upid)!;
  assert.deepEqual(Object.keys(item).sort(), [
    'endtime',
    'node',
    'pid',
    'pstart',
    'starttime',
    'status',
    'upid',
    'user',
    'worker_id',
    'worker_type',
  ]);
  assert.equal(item.node, 'testnode');
  assert.equal(item.worker_type, 'garbage_collection');
  assert.equal(item.user, 'root@pam');
  assert.equal(item.status, 'WARNINGS: 1');
  assert.equal(typeof list.body.total, 'number');

  const enc = encodeURIComponent(upid);
  const log = await api('GET', `/nodes/localhost/tasks/${enc}/log?start=0&limit=2&test-status=1`, {
    auth: root,
  });
  assert.equal(log.status, 200);
  const lines = log.body.data as Array<{ n: number; t: string }>;
  assert.deepEqual(
    lines.map((l) => l.n),
    [1, 2],
  );
  assert.match(lines[0]!.t, /: starting garbage collection$/);
  assert.equal(log.body.total, 3);
  assert.equal(log.body.active, false);

  const status = await api('GET', `/nodes/testnode/tasks/${enc}/status`, { auth: root });
  assert.equal(status.status, 200);
  const ended = status.body.data as { starttime: number; endtime: number };
  assert.ok(ended.endtime >= ended.starttime, 'a stopped task has its endtime, as PBS reports it');
  assert.deepEqual(
    { ...ended, pid: 0, pstart: 0, starttime: 0, endtime: 0 },
    {
      upid,
      node: 'testnode',
      pid: 0,
      pstart: 0,
      starttime: 0,
      type: 'garbage_collection',
      id: 'store1',
      user: 'root@pam',
      status: 'stopped',
      exitstatus: 'WARNINGS: 1',
      endtime: 0,
    },
  );

  const alice = await login('alice@pbs', 'alice-pw-1');
  const hers = await api('GET', '/nodes/localhost/tasks', { auth: alice });
  assert.ok(!(hers.body.data as Array<{ upid: string }>).some((t) => t.upid === upid));
  const peek = await api('GET', `/nodes/localhost/tasks/${enc}/log`, { auth: alice });
  assert.equal(peek.status, 403);
  assert.equal(peek.body.message, 'permission check failed - missing Sys.Audit on /system/tasks');
  const badUpid = await api('GET', '/nodes/localhost/tasks/not-a-upid/status', { auth: root });
  assert.equal(badUpid.status, 400);
  assert.match(badUpid.body.message!, /'upid'/);
});

test('stopping a running task through the API aborts it', async () => {
  const { tasks } = server.context;
  const upid = tasks.spawnTask('verify', 'store1', 'root@pam', async (task) => {
    // the abort may come before this function runs (it starts on the next turn of the event loop)
    await new Promise<void>((resolve) =>
      task.signal.aborted ? resolve() : task.signal.addEventListener('abort', () => resolve()),
    );
    task.throwIfAborted();
  });
  const res = await api('DELETE', `/nodes/localhost/tasks/${encodeURIComponent(upid)}`, { auth: root });
  assert.equal(res.status, 200);
  assert.equal(await tasks.waitForTask(upid), 'abort requested - aborting task');
});

test('however many logins failed from the host itself, the right password from it still logs in', async () => {
  await api('POST', '/access/users', { auth: root, body: { userid: 'carol@pbs', password: 'carol-pw-1' } });
  for (let i = 0; i < 8; i++) {
    const res = await api('POST', '/access/ticket', {
      body: { username: 'carol@pbs', password: 'guess-' + i },
    });
    assert.equal(res.status, 401);
    assert.equal(res.headers['retry-after'], undefined, 'no wait is imposed on localhost');
  }
  await login('carol@pbs', 'carol-pw-1');
});

test('from another address, failures beyond five make the next attempt wait, doubling each time; the wait passes', async () => {
  // the test can only connect from loopback, so this server treats loopback like any address
  const other = await startTestServer({
    prefix: 'stowage-e2e-brake-',
    rootPassword: ROOT_PASSWORD,
    loginLimit: { exemptLoopback: false, baseDelayMs: 1000 },
  });
  try {
    const attempt = (password: string) =>
      other.api('POST', '/access/ticket', { body: { username: 'root@pam', password } });
    for (let i = 0; i < 6; i++) assert.equal((await attempt('guess-' + i)).status, 401);
    const waiting = await attempt(ROOT_PASSWORD);
    assert.equal(waiting.status, 401, 'during the wait even the right password is not checked');
    assert.equal(waiting.body.message, 'authentication failed');
    assert.equal(waiting.headers['retry-after'], '1');
    await new Promise((r) => setTimeout(r, 1100));
    const after = await attempt(ROOT_PASSWORD);
    assert.equal(after.status, 200, 'a wait, not a lockout: the right password works once it passed');
    const otherUser = await other.api('POST', '/access/ticket', {
      body: { username: 'nobody@pbs', password: 'x' },
    });
    assert.equal(otherUser.headers['retry-after'], undefined, 'other users have their own count');
  } finally {
    await other.close();
  }
});

test('a disabled user can no longer use its ticket', async () => {
  const carolPw = 'dave-pw-12';
  await api('POST', '/access/users', { auth: root, body: { userid: 'dave@pbs', password: carolPw } });
  const dave = await login('dave@pbs', carolPw);
  assert.equal((await api('GET', '/version', { auth: dave })).status, 200);
  const off = await api('PUT', '/access/users/dave@pbs', { auth: root, body: { enable: false } });
  assert.equal(off.status, 200);
  assert.equal((await api('GET', '/version', { auth: dave })).status, 401);
});

test('a user cannot change anything about itself through the user update (PBS 4 ignores its password), and a stale digest is refused', async () => {
  await api('POST', '/access/users', { auth: root, body: { userid: 'erin@pbs', password: 'erin-pw-1' } });
  const erin = await login('erin@pbs', 'erin-pw-1');
  const pw = await api('PUT', '/access/users/erin@pbs', { auth: erin, body: { password: 'erin-pw-2' } });
  assert.equal(pw.status, 200);
  await login('erin@pbs', 'erin-pw-1'); // unchanged: passwords change through PUT /access/password
  const comment = await api('PUT', '/access/users/erin@pbs', { auth: erin, body: { comment: 'me' } });
  assert.equal(comment.status, 403);
  const rootPw = await api('PUT', '/access/users/root@pam', { auth: erin, body: { password: 'taken-over' } });
  assert.equal(rootPw.status, 403);

  const stale = await api('PUT', '/access/users/erin@pbs', {
    auth: root,
    body: { comment: 'x', digest: '0'.repeat(64) },
  });
  assert.equal(stale.status, 409);
  assert.equal(
    stale.body.message,
    'detected modified configuration - file changed by other user? Try again.',
  );
  const { digest } = (await api('GET', '/access/users/erin@pbs', { auth: root })).body as { digest: string };
  const fresh = await api('PUT', '/access/users/erin@pbs', { auth: root, body: { comment: 'x', digest } });
  assert.equal(fresh.status, 200);
  const del = await api('DELETE', '/access/users/erin@pbs', { auth: root });
  assert.equal(del.status, 200);
  const again = await api('POST', '/access/ticket', {
    body: { username: 'erin@pbs', password: 'erin-pw-2' },
  });
  assert.equal(again.status, 401, 'a deleted user cannot log in');
});
