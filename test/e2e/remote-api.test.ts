/**
 * `config/remote` over HTTPS (PBS `src/api2/config/remote.rs`), with a second server as the
 * remote: create, read, update and remove with parameters in the query, a JSON body and a form
 * body; the password never comes back; PBS's privileges; bad fields refused naming them with
 * nothing written; the scan calls list what the remote offers, and a wrong fingerprint or password
 * is PBS's "remote connection to 'HOST' failed".
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { startTestServer, type TestServer } from '../helpers/https-api.js';

let local: TestServer;
let remote: TestServer;
let remotePort: string;

before(async () => {
  [local, remote] = await Promise.all([
    startTestServer({ prefix: 'stowage-remote-api-local-' }),
    startTestServer({ prefix: 'stowage-remote-api-remote-', rootPassword: 'remote-root-pw1' }),
  ]);
  await remote.addBareDatastore('offsite');
  remotePort = new URL(remote.server.url).port;
});
after(async () => {
  await Promise.all([local?.close(), remote?.close()]);
});

const remoteCfg = () => join(local.paths.configDir, 'remote.cfg');

test('a remote is created from a JSON body, a form body or the query, read back without its password, and removed', async () => {
  const json = await local.api('POST', '/config/remote', {
    auth: local.root,
    body: {
      name: 'site-json',
      host: '127.0.0.1',
      port: Number(remotePort),
      'auth-id': 'root@pam',
      password: 'remote-root-pw1',
      fingerprint: remote.server.fingerprint,
    },
  });
  assert.equal(json.status, 200, JSON.stringify(json.body));
  const form = await local.api('POST', '/config/remote', {
    auth: local.root,
    form: `name=site-form&host=pbs2.example.com&auth-id=${encodeURIComponent('sync@pbs!pull')}&password=tok`,
  });
  assert.equal(form.status, 200, JSON.stringify(form.body));
  const query = await local.api(
    'POST',
    `/config/remote?name=site-query&host=10.0.0.2&auth-id=root%40pam&password=pw&comment=third`,
    { auth: local.root },
  );
  assert.equal(query.status, 200, JSON.stringify(query.body));
  assert.equal(statSync(remoteCfg()).mode & 0o777, 0o600);

  const list = await local.api('GET', '/config/remote', { auth: local.root });
  assert.deepEqual(
    (list.body.data as Array<{ name: string }>).map((r) => r.name),
    ['site-json', 'site-form', 'site-query'],
  );
  assert.ok(!JSON.stringify(list.body).includes('password'), 'no password in the list');
  assert.match(String(list.body.digest), /^[0-9a-f]{64}$/);
  const one = await local.api('GET', '/config/remote/site-form', { auth: local.root });
  assert.deepEqual(one.body.data, {
    name: 'site-form',
    host: 'pbs2.example.com',
    'auth-id': 'sync@pbs!pull',
  });

  const dup = await local.api('POST', '/config/remote', {
    auth: local.root,
    body: { name: 'site-form', host: 'x', 'auth-id': 'root@pam', password: 'p' },
  });
  assert.equal(dup.status, 400);
  assert.match(String(dup.body.message), /remote 'site-form' already exists/);

  // update under the digest, and delete a property
  const digest = String(one.body.digest);
  const upd = await local.api('PUT', '/config/remote/site-query', {
    auth: local.root,
    body: { port: 8008, delete: ['comment'], digest },
  });
  assert.equal(upd.status, 200, JSON.stringify(upd.body));
  assert.deepEqual((await local.api('GET', '/config/remote/site-query', { auth: local.root })).body.data, {
    name: 'site-query',
    host: '10.0.0.2',
    port: 8008,
    'auth-id': 'root@pam',
  });
  const stale = await local.api('PUT', '/config/remote/site-query', {
    auth: local.root,
    body: { port: 8009, digest },
  });
  assert.notEqual(stale.status, 200, 'a stale digest is refused');

  assert.equal((await local.api('DELETE', '/config/remote/site-query', { auth: local.root })).status, 200);
  const gone = await local.api('GET', '/config/remote/site-query', { auth: local.root });
  assert.equal(gone.status, 404);
});

test('bad fields are refused naming them, and nothing is written', async () => {
  const before = readFileSync(remoteCfg(), 'utf8');
  for (const [field, value] of [
    ['host', 'bad host name'],
    ['fingerprint', 'ab:cd'],
    ['auth-id', 'nobody'],
  ] as const) {
    const r = await local.api('POST', '/config/remote', {
      auth: local.root,
      body: { name: 'bad-one', host: 'h.example', 'auth-id': 'root@pam', password: 'p', [field]: value },
    });
    assert.equal(r.status, 400, field);
    assert.ok(
      String(r.body.message).includes(field) || Object.keys(r.body.errors ?? {}).includes(field),
      field,
    );
  }
  assert.equal(readFileSync(remoteCfg(), 'utf8'), before);
});

test('Remote.Audit lists and reads, Remote.Modify changes; without Remote.Audit the list is empty', async () => {
  const auditor = await local.addUser('auditor@pbs', [{ path: '/remote', role: 'RemoteAudit' }]);
  const nobody = await local.addUser('nobody@pbs');
  assert.equal(
    ((await local.api('GET', '/config/remote', { auth: auditor })).body.data as unknown[]).length,
    2,
  );
  assert.deepEqual((await local.api('GET', '/config/remote', { auth: nobody })).body.data, []);
  assert.equal((await local.api('GET', '/config/remote/site-json', { auth: nobody })).status, 403);
  const create = await local.api('POST', '/config/remote', {
    auth: auditor,
    body: { name: 'sneaky', host: 'h.example', 'auth-id': 'root@pam', password: 'p' },
  });
  assert.equal(create.status, 403);
  assert.equal((await local.api('DELETE', '/config/remote/site-json', { auth: auditor })).status, 403);
});

test("the scan lists the remote's datastores and groups; a wrong fingerprint or password is a clear 400", async () => {
  const scan = await local.api('GET', '/config/remote/site-json/scan', { auth: local.root });
  assert.equal(scan.status, 200, JSON.stringify(scan.body));
  assert.deepEqual(
    (scan.body.data as Array<{ store: string }>).map((s) => s.store),
    ['offsite'],
  );
  const groups = await local.api('GET', '/config/remote/site-json/scan/offsite/groups', { auth: local.root });
  assert.equal(groups.status, 200, JSON.stringify(groups.body));
  assert.deepEqual(groups.body.data, []);
  const snaps = await local.api('GET', '/config/remote/site-json/scan/offsite/snapshots?backup-type=vm', {
    auth: local.root,
  });
  assert.equal(snaps.status, 200, JSON.stringify(snaps.body));
  assert.deepEqual(snaps.body.data, []);

  const wrongFp = await local.api('PUT', '/config/remote/site-json', {
    auth: local.root,
    body: { fingerprint: Array.from({ length: 32 }, () => 'ab').join(':') },
  });
  assert.equal(wrongFp.status, 200);
  const refused = await local.api('GET', '/config/remote/site-json/scan', { auth: local.root });
  assert.equal(refused.status, 400);
  assert.match(String(refused.body.message), /^remote connection to '127\.0\.0\.1' failed - /);

  await local.api('PUT', '/config/remote/site-json', {
    auth: local.root,
    body: { fingerprint: remote.server.fingerprint, password: 'wrong-password' },
  });
  const badLogin = await local.api('GET', '/config/remote/site-json/scan', { auth: local.root });
  assert.equal(badLogin.status, 400);
  assert.match(String(badLogin.body.message), /^remote connection to '127\.0\.0\.1' failed - /);
});

test('a remote used by a sync job cannot be removed', async () => {
  await local.addBareDatastore('mirror');
  const job = await local.api('POST', '/config/sync', {
    auth: local.root,
    body: { id: 'uses-json', store: 'mirror', remote: 'site-json', 'remote-store': 'offsite' },
  });
  assert.equal(job.status, 200, JSON.stringify(job.body));
  const del = await local.api('DELETE', '/config/remote/site-json', { auth: local.root });
  assert.equal(del.status, 400);
  assert.match(
    String(del.body.message),
    /remote 'site-json' is used by sync job 'uses-json' \(datastore 'mirror'\)/,
  );
});
