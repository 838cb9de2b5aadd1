import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { listTree } from '../helpers/files.js';
import { startTestServer, type Auth, type TestServer } from '../helpers/https-api.js';
import { writeSnapshots } from '../helpers/snapshot-fixture.js';

let t: TestServer;
let storePath: string;
const STORE = 'nsstore';
const T1 = 1717236000; // 2024-06-01T10:00:00Z
const NS = `/admin/datastore/${STORE}/namespace`;

before(async () => {
  t = await startTestServer({ prefix: 'stowage-e2e-ns-' });
  storePath = await t.addBareDatastore(STORE);
});

after(async () => {
  await t?.close();
});

async function setMode(mode: string | null): Promise<void> {
  const body = mode === null ? { delete: 'maintenance-mode' } : { 'maintenance-mode': mode };
  const res = await t.api('PUT', `/config/datastore/${STORE}`, { auth: t.root, body });
  assert.equal(res.status, 200, JSON.stringify(res.body));
}

async function create(name: string, parent?: string, auth: Auth = t.root) {
  return t.api('POST', NS, { auth, body: { name, ...(parent !== undefined && { parent }) } });
}

async function list(query = '', auth: Auth = t.root): Promise<string[]> {
  const res = await t.api('GET', `${NS}${query}`, { auth });
  assert.equal(res.status, 200, JSON.stringify(res.body));
  return (res.body.data as Array<{ ns: string }>).map((i) => i.ns);
}

/** The namespace directories on disk, as `a/b` names. */
function namespacesOnDisk(): string[] {
  return listTree(storePath)
    .filter((p) => /(^|\/)ns\/[^/]+$/.test(p))
    .map((p) =>
      p
        .split('/')
        .filter((_, i) => i % 2 === 1)
        .join('/'),
    )
    .sort();
}

test('namespaces are listed as PBS lists them: the root as "", parents before children, max-depth counted from parent', async () => {
  for (const [name, parent] of [
    ['a', undefined],
    ['b', 'a'],
    ['c', 'a/b'],
    ['x', undefined],
  ] as const) {
    const res = await create(name, parent);
    assert.equal(res.status, 200, JSON.stringify(res.body));
    assert.equal(res.body.data, parent ? `${parent}/${name}` : name);
  }
  const res = await t.api('GET', NS, { auth: t.root });
  assert.deepEqual(res.body.data, [{ ns: '' }, { ns: 'a' }, { ns: 'a/b' }, { ns: 'a/b/c' }, { ns: 'x' }]);
  assert.deepEqual(await list('?parent=a&max-depth=1'), ['a', 'a/b']);
  assert.deepEqual(await list('?max-depth=0'), ['']);
  assert.deepEqual(namespacesOnDisk(), ['a', 'a/b', 'a/b/c', 'x']);
});

test('a namespace can be created with its parameters in a JSON body, a form body or the query', async () => {
  const json = await t.api('POST', NS, { auth: t.root, body: { name: 'viajson', parent: 'a' } });
  assert.equal(json.status, 200, JSON.stringify(json.body));
  assert.equal(json.body.data, 'a/viajson');
  const form = await t.api('POST', NS, { auth: t.root, form: 'name=viaform&parent=a' });
  assert.equal(form.status, 200, JSON.stringify(form.body));
  assert.equal(form.body.data, 'a/viaform');
  const query = await t.api('POST', `${NS}?name=viaquery&parent=a`, { auth: t.root });
  assert.equal(query.status, 200, JSON.stringify(query.body));
  assert.equal(query.body.data, 'a/viaquery');
  for (const n of ['viajson', 'viaform', 'viaquery']) assert.ok(existsSync(join(storePath, 'ns/a/ns', n)));
});

test('creating an existing namespace succeeds and changes nothing, as in PBS', async () => {
  const before = listTree(storePath);
  const res = await create('b', 'a');
  assert.equal(res.status, 200, JSON.stringify(res.body));
  assert.equal(res.body.data, 'a/b');
  assert.deepEqual(listTree(storePath), before);
});

test("creating refuses bad names, PBS's depth and length limits and a missing parent, naming the parameter and changing nothing on disk", async () => {
  // a chain of seven levels: the deepest a namespace may be
  let parent = '';
  for (let i = 1; i <= 7; i++) {
    const res = await create(`d${i}`, parent || undefined);
    assert.equal(res.status, 200, `level ${i}: ${JSON.stringify(res.body)}`);
    parent = parent ? `${parent}/d${i}` : `d${i}`;
  }
  // names of the create call have at most 32 characters, so 7 of them stay below 256; a namespace
  // made by another tool with longer components can still meet the length limit
  const longParent = `${'l'.repeat(100)}/${'m'.repeat(100)}`;
  mkdirSync(join(storePath, 'ns', 'l'.repeat(100), 'ns', 'm'.repeat(100)), { recursive: true });
  const before = listTree(storePath);
  const cases: Array<[Record<string, unknown> | string, number, RegExp, string?]> = [
    [{ name: 'bad/name' }, 400, /'name'/, 'name'],
    [{ name: '.hidden' }, 400, /'name'/, 'name'],
    [{ name: '' }, 400, /'name'/, 'name'],
    [{ name: 'n'.repeat(33) }, 400, /'name'/, 'name'],
    [{}, 400, /'name': parameter is missing/, 'name'],
    [{ name: 'ok', parent: '../etc' }, 400, /parent/],
    [{ name: 'ok', parent: 'a//b' }, 400, /parent/],
    [{ name: 'd8', parent }, 400, /invalid name 'd8': namespace too deep, 7 >= max 7/],
    [{ name: 'z'.repeat(32), parent: longParent }, 200, /.*/], // 233 characters
    [{ name: 'y'.repeat(32), parent: longParent }, 200, /.*/],
    [{ name: 'z'.repeat(22), parent: `${longParent}/${'z'.repeat(32)}` }, 400, /namespace length exceeded/],
    [{ name: 'ok', parent: 'missing' }, 404, /namespace 'missing' does not exist/],
    [{ name: 'ok', unknown: 1 }, 400, /'unknown'/],
  ];
  for (const [body, status, message, param] of cases) {
    const res = await t.api('POST', NS, { auth: t.root, body });
    assert.equal(res.status, status, `${JSON.stringify(body)}: ${JSON.stringify(res.body)}`);
    assert.match(res.body.message ?? '', message);
    if (param) assert.ok(res.body.errors?.[param] ?? res.body.message?.includes(`'${param}'`), param);
    if (status === 200) before.push(...listTree(storePath).filter((p) => !before.includes(p)));
  }
  assert.deepEqual(listTree(storePath).sort(), before.sort(), 'no refused creation touched the disk');
});

test('a namespace with backup groups is only deleted with delete-groups; empty namespaces below it are pruned', async () => {
  await writeSnapshots(t.server.context.datastores, STORE, [
    { type: 'vm', id: '100', time: T1, ns: 'del/full' },
    { type: 'host', id: 'web', time: T1, ns: 'del/full' },
  ]);
  assert.equal((await create('empty', 'del')).status, 200);

  const refused = await t.api('DELETE', `${NS}?ns=del`, { auth: t.root });
  assert.equal(refused.status, 409, JSON.stringify(refused.body));
  assert.equal(
    refused.body.message,
    'only partially deleted due to existing groups but `delete-groups` not true',
  );
  assert.ok(!existsSync(join(storePath, 'ns/del/ns/empty')), 'the empty namespace was pruned, as in PBS');
  assert.ok(existsSync(join(storePath, 'ns/del/ns/full/vm/100')), 'the groups stay');

  const res = await t.api('DELETE', `${NS}?ns=del&delete-groups=1`, { auth: t.root });
  assert.equal(res.status, 200, JSON.stringify(res.body));
  assert.deepEqual(res.body.data, { 'removed-groups': 2, 'protected-snapshots': 0, 'removed-snapshots': 2 });
  assert.ok(!existsSync(join(storePath, 'ns/del')));
  assert.ok(!(await list()).includes('del'));
});

test('deleting reads its parameters from the query, a JSON body or a form body', async () => {
  for (const n of ['q1', 'j1', 'f1']) assert.equal((await create(n)).status, 200);
  const viaQuery = await t.api('DELETE', `${NS}?ns=q1`, { auth: t.root });
  assert.equal(viaQuery.status, 200, JSON.stringify(viaQuery.body));
  const viaJson = await t.api('DELETE', NS, { auth: t.root, body: { ns: 'j1', 'delete-groups': true } });
  assert.equal(viaJson.status, 200, JSON.stringify(viaJson.body));
  const viaForm = await t.api('DELETE', NS, { auth: t.root, form: 'ns=f1&delete-groups=0' });
  assert.equal(viaForm.status, 200, JSON.stringify(viaForm.body));
  for (const n of ['q1', 'j1', 'f1']) assert.ok(!existsSync(join(storePath, 'ns', n)), n);
});

test('protected snapshots keep their namespace: an error by default, the counts with error-on-protected=0', async () => {
  await writeSnapshots(t.server.context.datastores, STORE, [
    { type: 'vm', id: '200', time: T1, ns: 'prot' },
    { type: 'vm', id: '201', time: T1, ns: 'prot' },
  ]);
  const protect = await t.api('PUT', `/admin/datastore/${STORE}/protected`, {
    auth: t.root,
    body: { ns: 'prot', 'backup-type': 'vm', 'backup-id': '200', 'backup-time': T1, protected: true },
  });
  assert.equal(protect.status, 200, JSON.stringify(protect.body));

  const refused = await t.api('DELETE', `${NS}?ns=prot&delete-groups=1`, { auth: t.root });
  assert.equal(refused.status, 409, JSON.stringify(refused.body));
  assert.equal(refused.body.message, 'group only partially deleted due to protected snapshots');
  assert.ok(existsSync(join(storePath, 'ns/prot/vm/200')));
  assert.ok(!existsSync(join(storePath, 'ns/prot/vm/201')), 'unprotected groups went, as in PBS');

  const res = await t.api('DELETE', `${NS}?ns=prot&delete-groups=1&error-on-protected=0`, { auth: t.root });
  assert.equal(res.status, 200, JSON.stringify(res.body));
  assert.deepEqual(res.body.data, { 'removed-groups': 0, 'protected-snapshots': 1, 'removed-snapshots': 0 });
  assert.ok(existsSync(join(storePath, 'ns/prot/vm/200')));
});

test('the root namespace cannot be deleted, a missing one is 404, and bad names are 400 naming ns', async () => {
  const before = listTree(storePath);
  const cases: Array<[string, number, RegExp]> = [
    ['?ns=', 400, /^invalid ns '': the root namespace cannot be deleted$/],
    ['', 400, /'ns': parameter is missing/],
    ['?ns=nope', 404, /namespace 'nope' does not exist/],
    ['?ns=a/../x', 400, /ns/],
    ['?ns=x&delete-groups=maybe', 400, /'delete-groups'/],
  ];
  for (const [query, status, message] of cases) {
    const res = await t.api('DELETE', `${NS}${query}`, { auth: t.root });
    assert.equal(res.status, status, `${query}: ${JSON.stringify(res.body)}`);
    assert.match(res.body.message ?? '', message);
  }
  assert.deepEqual(listTree(storePath), before);
});

test('users see only the namespaces they hold a privilege on, and modify only below a namespace they may modify', async () => {
  const auditor = await t.addUser('nsaudit@pbs', [{ path: `/datastore/${STORE}/a`, role: 'DatastoreAudit' }]);
  const admin = await t.addUser('nsadmin@pbs', [{ path: `/datastore/${STORE}/a`, role: 'DatastoreAdmin' }]);
  const backup = await t.addUser('nsbackup@pbs', [{ path: `/datastore/${STORE}`, role: 'DatastoreBackup' }]);
  const nobody = await t.addUser('nsnobody@pbs');

  assert.deepEqual((await list('', auditor)).slice(0, 3), ['a', 'a/b', 'a/b/c']);
  assert.ok(!(await list('', auditor)).some((n) => n === '' || n === 'x'));
  assert.ok((await list('', backup)).includes(''), 'Datastore.Backup is a namespace privilege');

  const denied = await t.api('GET', NS, { auth: nobody });
  assert.equal(denied.status, 403);
  assert.equal(denied.body.message, 'permission check failed');
  const hidden = await t.api('GET', `${NS}?parent=x`, { auth: auditor });
  assert.equal(hidden.status, 403, 'no privilege on x or below it');
  const missing = await t.api('GET', `${NS}?parent=nope`, { auth: auditor });
  assert.equal(
    missing.status,
    403,
    'a missing namespace the caller may not see is no different from a hidden one',
  );

  const before = listTree(storePath);
  const cases: Array<[Auth, string, string, RegExp]> = [
    [auditor, 'POST', 'nope', /missing Datastore\.Modify on \/datastore\/nsstore\/a$/],
    [admin, 'POST', 'top', /missing Datastore\.Modify on \/datastore\/nsstore$/],
    [admin, 'DELETE', 'a', /missing Datastore\.Modify on \/datastore\/nsstore$/],
    [backup, 'POST', 'top', /missing Datastore\.Modify on \/datastore\/nsstore$/],
    [nobody, 'DELETE', 'x', /missing Datastore\.Modify on \/datastore\/nsstore$/],
  ];
  for (const [auth, method, name, message] of cases) {
    const res =
      method === 'POST'
        ? await create(name, auth === auditor ? 'a' : undefined, auth)
        : await t.api('DELETE', `${NS}?ns=${name}`, { auth });
    assert.equal(res.status, 403, `${method} ${name}: ${JSON.stringify(res.body)}`);
    assert.match(res.body.message ?? '', message);
  }
  assert.deepEqual(listTree(storePath), before, 'no refused call touched the disk');

  const made = await create('mine', 'a', admin);
  assert.equal(made.status, 200, JSON.stringify(made.body));
  const gone = await t.api('DELETE', `${NS}?ns=a/mine`, { auth: admin });
  assert.equal(gone.status, 200, JSON.stringify(gone.body));
});

test('read-only maintenance lists namespaces but refuses creating and deleting with its message; offline refuses all', async () => {
  const before = listTree(storePath);
  await setMode('read-only,message="disk swap"');
  try {
    assert.ok((await list()).includes('a'));
    const message = `datastore '${STORE}' is unavailable: read-only maintenance mode: disk swap`;
    const created = await create('ro');
    assert.equal(created.status, 503);
    assert.equal(created.body.message, message);
    const deleted = await t.api('DELETE', `${NS}?ns=x`, { auth: t.root });
    assert.equal(deleted.status, 503);
    assert.equal(deleted.body.message, message);
  } finally {
    await setMode(null);
  }
  await setMode('offline,message="fsck"');
  try {
    const message = `datastore '${STORE}' is unavailable: offline maintenance mode: fsck`;
    for (const res of [
      await t.api('GET', NS, { auth: t.root }),
      await create('off'),
      await t.api('DELETE', `${NS}?ns=x`, { auth: t.root }),
    ]) {
      assert.equal(res.status, 503, JSON.stringify(res.body));
      assert.equal(res.body.message, message);
    }
  } finally {
    await setMode(null);
  }
  assert.deepEqual(listTree(storePath), before, 'nothing was written in maintenance');
});
