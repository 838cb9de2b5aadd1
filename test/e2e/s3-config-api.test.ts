/**
 * `config/s3` over HTTPS (PBS 4 `src/api2/config/s3.rs`): create, read, update and remove S3
 * endpoint configurations with parameters in the query, a JSON body and a form body; the secret
 * key is kept in s3.cfg in PBS's format, which is not world-readable, and never comes back;
 * PBS's privileges; bad fields refused naming them with nothing written.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { startTestServer, type TestServer } from '../helpers/https-api.js';

let local: TestServer;
before(async () => {
  local = await startTestServer({ prefix: 'stowage-s3-config-api-' });
});
after(async () => {
  await local?.close();
});

const s3Cfg = () => join(local.paths.configDir, 's3.cfg');
const SECRET = 'very-secret-key/0123456789';

test('an endpoint is created from a JSON body, a form body or the query; the secret is kept but never returned', async () => {
  const json = await local.api('POST', '/config/s3', {
    auth: local.root,
    body: {
      id: 'ceph-json',
      endpoint: 's3.example.com',
      port: 7480,
      region: 'us-east-1',
      'access-key': 'AKJSON',
      'secret-key': SECRET,
      'path-style': true,
      'provider-quirks': ['skip-if-none-match-header'],
    },
  });
  assert.equal(json.status, 200, JSON.stringify(json.body));
  const form = await local.api('POST', '/config/s3', {
    auth: local.root,
    form: `id=aws-form&endpoint=${encodeURIComponent('{{bucket}}.s3.{{region}}.amazonaws.com')}&region=eu-central-1&access-key=AKFORM&secret-key=s2`,
  });
  assert.equal(form.status, 200, JSON.stringify(form.body));
  const query = await local.api(
    'POST',
    '/config/s3?id=ip-query&endpoint=10.0.0.5&access-key=AKQ&secret-key=s3',
    {
      auth: local.root,
    },
  );
  assert.equal(query.status, 200, JSON.stringify(query.body));

  assert.equal(statSync(s3Cfg()).mode & 0o007, 0, 's3.cfg is not world-readable');
  const text = readFileSync(s3Cfg(), 'utf8');
  assert.match(
    text,
    /^s3-endpoint: ceph-json\n\tendpoint s3\.example\.com\n\tport 7480\n\tregion us-east-1\n/m,
  );
  assert.match(text, /\tprovider-quirks skip-if-none-match-header\n/);
  assert.match(text, new RegExp(`\\tsecret-key ${SECRET}\\n`), 'PBS keeps the secret in s3.cfg');

  const list = await local.api('GET', '/config/s3', { auth: local.root });
  assert.deepEqual(
    (list.body.data as Array<{ id: string }>).map((e) => e.id),
    ['ceph-json', 'aws-form', 'ip-query'],
  );
  assert.ok(!JSON.stringify(list.body).includes('secret'), 'no secret in the list');
  assert.match(String(list.body.digest), /^[0-9a-f]{64}$/);
  const one = await local.api('GET', '/config/s3/ceph-json', { auth: local.root });
  assert.deepEqual(one.body.data, {
    id: 'ceph-json',
    endpoint: 's3.example.com',
    port: 7480,
    region: 'us-east-1',
    'access-key': 'AKJSON',
    'path-style': true,
    'provider-quirks': ['skip-if-none-match-header'],
  });

  const dup = await local.api('POST', '/config/s3', {
    auth: local.root,
    body: { id: 'aws-form', endpoint: 'x.example', 'access-key': 'a', 'secret-key': 's' },
  });
  assert.equal(dup.status, 400);
  assert.match(String(dup.body.message), /s3 client config 'aws-form' already exists/);
});

test('an update sets fields and deletes others under the digest; a stale digest changes nothing', async () => {
  const one = await local.api('GET', '/config/s3/ceph-json', { auth: local.root });
  const digest = String(one.body.digest);
  const upd = await local.api('PUT', '/config/s3/ceph-json', {
    auth: local.root,
    body: {
      region: 'eu-west-1',
      'secret-key': 'rotated-secret',
      delete: ['port', 'provider-quirks'],
      digest,
    },
  });
  assert.equal(upd.status, 200, JSON.stringify(upd.body));
  const after = await local.api('GET', '/config/s3/ceph-json', { auth: local.root });
  assert.deepEqual(after.body.data, {
    id: 'ceph-json',
    endpoint: 's3.example.com',
    region: 'eu-west-1',
    'access-key': 'AKJSON',
    'path-style': true,
  });
  assert.match(readFileSync(s3Cfg(), 'utf8'), /\tsecret-key rotated-secret\n/);
  const before = readFileSync(s3Cfg(), 'utf8');
  const stale = await local.api('PUT', '/config/s3/ceph-json?region=us-west-2&digest=' + digest, {
    auth: local.root,
  });
  assert.equal(stale.status, 409, JSON.stringify(stale.body));
  assert.equal(readFileSync(s3Cfg(), 'utf8'), before);
  const missing = await local.api('PUT', '/config/s3/no-such', { auth: local.root, body: { region: 'x1' } });
  assert.equal(missing.status, 404);
});

test('bad fields are refused naming them, and nothing is written', async () => {
  const before = readFileSync(s3Cfg(), 'utf8');
  for (const [field, value] of [
    ['endpoint', 'https://s3.example.com'],
    ['region', 'Upper'],
    ['fingerprint', 'ab:cd'],
    ['port', 70000],
    ['provider-quirks', ['no-such-quirk']],
    ['rate-in', 'fast'],
    ['id', 'x'],
  ] as const) {
    const r = await local.api('POST', '/config/s3', {
      auth: local.root,
      body: { id: 'bad-one', endpoint: 'h.example', 'access-key': 'a', 'secret-key': 's', [field]: value },
    });
    assert.equal(r.status, 400, `${field}: ${JSON.stringify(r.body)}`);
    assert.ok(
      String(r.body.message).includes(field) || Object.keys(r.body.errors ?? {}).includes(field),
      `${field}: ${JSON.stringify(r.body)}`,
    );
  }
  const noSecret = await local.api('POST', '/config/s3', {
    auth: local.root,
    body: { id: 'no-secret', endpoint: 'h.example', 'access-key': 'a' },
  });
  assert.equal(noSecret.status, 400);
  assert.equal(readFileSync(s3Cfg(), 'utf8'), before);
});

test('Sys.Audit lists and reads, Sys.Modify changes; without Sys.Audit the list is empty', async () => {
  const auditor = await local.addUser('s3auditor@pbs', [{ path: '/system/s3-endpoint', role: 'Audit' }]);
  const nobody = await local.addUser('s3nobody@pbs');
  assert.equal(((await local.api('GET', '/config/s3', { auth: auditor })).body.data as unknown[]).length, 3);
  assert.equal((await local.api('GET', '/config/s3/ceph-json', { auth: auditor })).status, 200);
  assert.deepEqual((await local.api('GET', '/config/s3', { auth: nobody })).body.data, []);
  assert.equal((await local.api('GET', '/config/s3/ceph-json', { auth: nobody })).status, 403);
  const create = await local.api('POST', '/config/s3', {
    auth: auditor,
    body: { id: 'sneaky', endpoint: 'h.example', 'access-key': 'a', 'secret-key': 's' },
  });
  assert.equal(create.status, 403);
  assert.equal((await local.api('PUT', '/config/s3/ceph-json?region=xx', { auth: auditor })).status, 403);
  assert.equal((await local.api('DELETE', '/config/s3/ceph-json', { auth: auditor })).status, 403);
  assert.equal((await local.api('GET', '/config/s3')).status, 401);
});

test('an endpoint a PBS 4 S3 datastore uses cannot be removed', async () => {
  await local.addBareDatastore('pbs4-s3', { backend: 'type=s3,client=aws-form,bucket=backups' });
  const before = readFileSync(s3Cfg(), 'utf8');
  const del = await local.api('DELETE', '/config/s3/aws-form', { auth: local.root });
  assert.equal(del.status, 400, JSON.stringify(del.body));
  assert.equal(del.body.message, 'in-use by datastore pbs4-s3');
  assert.equal(readFileSync(s3Cfg(), 'utf8'), before);
});

test('an endpoint is removed (no body, digest in the query); removing it again is a 404', async () => {
  const { digest } = (await local.api('GET', '/config/s3', { auth: local.root })).body;
  const del = await local.api('DELETE', `/config/s3/ip-query?digest=${String(digest)}`, { auth: local.root });
  assert.equal(del.status, 200, JSON.stringify(del.body));
  const again = await local.api('DELETE', '/config/s3/ip-query', { auth: local.root });
  assert.equal(again.status, 404);
  assert.match(String(again.body.message), /s3 client config 'ip-query' do not exist/);
  assert.ok(existsSync(s3Cfg()));
  assert.doesNotMatch(readFileSync(s3Cfg(), 'utf8'), /ip-query/);
});
