/**
 * Sync between two `stowage` server processes on loopback (issue 14), pull and push. Pull: the target pulls the
 * source's datastore through the API and the reader protocol, as PBS's pull does. Backups are made
 * by the real client on the source and restored by it from the target, byte for byte; a second
 * pull transfers no chunk; maintenance on either end is obeyed (source read-only still syncs,
 * source offline is reported in the task log with the remote's message, target read-only refuses
 * the pull at once); remove-vanished removes exactly what vanished; a local pull (no remote) works
 * between two datastores of one server.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { request as httpsRequest } from 'node:https';
import { ApiClient, authHeaders } from '../../src/client/connection.js';
import { remoteConfig } from '../../src/config/remote-config.js';
import {
  ROOT_PASSWORD,
  loginApi,
  runClient,
  runTreeBackup,
  startE2eServer,
  taskEnd,
  type E2eServer,
} from './backup-helpers.js';
import { randomTree } from '../faults/fault-helpers.js';
import { STOWAGE_BIN, runCli } from '../helpers/cli.js';

const STORE = 'local';
const T0 = 1_700_000_000;

let src: E2eServer;
let dst: E2eServer;
let srcApi: ApiClient;
let dstApi: ApiClient;
let tree: string;

before(async () => {
  [src, dst] = await Promise.all([startE2eServer('stowage-sync-src-'), startE2eServer('stowage-sync-dst-')]);
  [srcApi, dstApi] = await Promise.all([loginApi(src), loginApi(dst)]);
  // the source knows the target as remote `site-b` (push), pinned to its certificate
  await remoteConfig(join(src.root, 'etc')).update((remotes) => {
    remotes.set('site-b', {
      name: 'site-b',
      host: '127.0.0.1',
      port: dst.port,
      'auth-id': 'root@pam',
      password: ROOT_PASSWORD,
      fingerprint: dst.fingerprint,
    });
  });
  // the target knows the source as remote `site-a`, pinned to its certificate
  await remoteConfig(join(dst.root, 'etc')).update((remotes) => {
    remotes.set('site-a', {
      name: 'site-a',
      host: '127.0.0.1',
      port: src.port,
      'auth-id': 'root@pam',
      password: ROOT_PASSWORD,
      fingerprint: src.fingerprint,
    });
  });
  tree = randomTree(join(src.root, 'tree'), 6, 128 * 1024);
  // two groups, three snapshots, made by the real client
  for (const [id, time] of [
    ['web', T0],
    ['web', T0 + 60],
    ['db', T0],
  ] as const) {
    writeFileSync(join(tree, 'changing.txt'), `${id} at ${time}\n`);
    const r = await runTreeBackup(src.env, tree, id, time);
    assert.equal(r.code, 0, r.stderr);
  }
});

after(async () => {
  await Promise.all([src?.stop(), dst?.stop()]);
});

async function pull(params: Record<string, unknown> = {}): Promise<{ status: string; log: string[] }> {
  const upid = await dstApi.call<string>('POST', '/pull', {
    store: STORE,
    remote: 'site-a',
    'remote-store': STORE,
    ...params,
  });
  return taskEnd(dstApi, upid);
}

const snapshotsOf = async (api: ApiClient) =>
  (
    await api.call<Array<{ 'backup-type': string; 'backup-id': string; 'backup-time': number }>>(
      'GET',
      `/admin/datastore/${STORE}/snapshots`,
    )
  )
    .map((s) => `${s['backup-type']}/${s['backup-id']}/${s['backup-time']}`)
    .sort();

const snapshotName = (id: string, time: number) =>
  `host/${id}/${new Date(time * 1000).toISOString().replace(/\.\d{3}Z$/, 'Z')}`;

const setMode = (api: ApiClient, mode: string | undefined) =>
  api.call(
    'PUT',
    `/config/datastore/${STORE}`,
    mode ? { 'maintenance-mode': mode } : { delete: 'maintenance-mode' },
  );

test('a pull copies every group and snapshot; restores from the target are byte-identical; a second pull downloads nothing', async () => {
  const first = await pull();
  assert.equal(first.status, 'OK', first.log.join('\n'));
  assert.deepEqual(await snapshotsOf(dstApi), await snapshotsOf(srcApi));
  assert.ok(first.log.some((l) => /Summary: 3 snapshot\(s\) synced, [1-9]\d* chunk\(s\) downloaded/.test(l)));

  // the last snapshot of web restores from the target as it was backed up
  const out = join(dst.root, 'restored');
  const r = await runClient(['restore', snapshotName('web', T0 + 60), 'root.tar', out], dst.env);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(readFileSync(join(out, 'changing.txt'), 'utf8'), `web at ${T0 + 60}\n`);
  for (const name of ['f0', 'f5']) {
    assert.deepEqual(readFileSync(join(out, name)), readFileSync(join(tree, name)), name);
  }
  // the groups belong to the caller of the pull
  const groups = await dstApi.call<Array<{ owner: string }>>('GET', `/admin/datastore/${STORE}/groups`);
  assert.deepEqual(
    groups.map((g) => g.owner),
    ['root@pam', 'root@pam'],
  );

  const second = await pull();
  assert.equal(second.status, 'OK', second.log.join('\n'));
  assert.ok(
    second.log.some((l) => /Summary: 0 snapshot\(s\) synced, 0 chunk\(s\) downloaded \(0 bytes\)/.test(l)),
    second.log.join('\n'),
  );
  assert.ok(second.log.some((l) => /no data changes/.test(l)));
});

test('source read-only still syncs; source offline is reported with its message; target read-only refuses at once', async () => {
  writeFileSync(join(tree, 'changing.txt'), 'third web\n');
  const fresh = await runTreeBackup(src.env, tree, 'web', T0 + 120);
  assert.equal(fresh.code, 0, fresh.stderr);

  await setMode(srcApi, 'type=read-only,message=migrating');
  try {
    const ro = await pull();
    assert.equal(ro.status, 'OK', ro.log.join('\n'));
    assert.ok((await snapshotsOf(dstApi)).includes(`host/web/${T0 + 120}`));
  } finally {
    await setMode(srcApi, undefined);
  }

  await setMode(srcApi, 'type=offline,message=disk swap at site A');
  try {
    const off = await pull();
    assert.notEqual(off.status, 'OK');
    assert.ok(
      off.log.some((l) => l.includes('disk swap at site A')),
      `the remote's message is in the task log:\n${off.log.join('\n')}`,
    );
  } finally {
    await setMode(srcApi, undefined);
  }

  await setMode(dstApi, 'type=read-only,message=target frozen');
  try {
    await assert.rejects(
      dstApi.call('POST', '/pull', { store: STORE, remote: 'site-a', 'remote-store': STORE }),
      (err: Error & { status?: number }) => err.status === 503 && /target frozen/.test(err.message),
    );
  } finally {
    await setMode(dstApi, undefined);
  }
});

test('remove-vanished removes exactly the snapshots and groups that vanished from the source', async () => {
  assert.equal((await pull()).status, 'OK');
  const before = await snapshotsOf(dstApi);
  await srcApi.call('DELETE', `/admin/datastore/${STORE}/snapshots`, {
    'backup-type': 'host',
    'backup-id': 'web',
    'backup-time': T0,
  });
  await srcApi.call('DELETE', `/admin/datastore/${STORE}/groups`, {
    'backup-type': 'host',
    'backup-id': 'db',
  });

  // without remove-vanished nothing is removed
  assert.equal((await pull()).status, 'OK');
  assert.deepEqual(await snapshotsOf(dstApi), before);

  const res = await pull({ 'remove-vanished': true });
  assert.equal(res.status, 'OK', res.log.join('\n'));
  assert.deepEqual(await snapshotsOf(dstApi), await snapshotsOf(srcApi));
  assert.deepEqual(
    before.filter((s) => !(s === `host/web/${T0}` || s.startsWith('host/db/'))),
    await snapshotsOf(dstApi),
  );
  assert.ok(res.log.some((l) => l.includes(`delete vanished snapshot host/web/`)));
  assert.ok(res.log.some((l) => l.includes(`delete vanished group 'host/db'`)));
});

test('a local pull copies one datastore of a server into another, and a pull into itself is refused', async () => {
  const path = join(dst.root, 'stores', 'copy');
  mkdirSync(join(dst.root, 'stores'), { recursive: true });
  const created = await dstApi.call<string>('POST', '/config/datastore', { name: 'copy', path });
  assert.equal((await taskEnd(dstApi, created)).status, 'OK');
  const upid = await dstApi.call<string>('POST', '/pull', { store: 'copy', 'remote-store': STORE });
  const res = await taskEnd(dstApi, upid);
  assert.equal(res.status, 'OK', res.log.join('\n'));
  const copied = (
    await dstApi.call<Array<{ 'backup-id': string; 'backup-time': number }>>(
      'GET',
      '/admin/datastore/copy/snapshots',
    )
  )
    .map((s) => `host/${s['backup-id']}/${s['backup-time']}`)
    .sort();
  assert.deepEqual(copied, await snapshotsOf(dstApi));
  await assert.rejects(
    dstApi.call('POST', '/pull', { store: STORE, 'remote-store': STORE }),
    (err: Error & { status?: number }) =>
      err.status === 400 && /can't sync to same datastore/.test(err.message),
  );
});

test('a sync job is configured, listed with its status and run now; its groups belong to its owner; access is checked as PBS does', async () => {
  await dstApi.call('POST', '/config/sync', {
    id: 'from-site-a',
    store: STORE,
    ns: 'mirror',
    remote: 'site-a',
    'remote-store': STORE,
    owner: 'root@pam',
    'group-filter': ['group:host/web'],
    schedule: 'daily',
  });
  const created = await dstApi.call<string>('POST', `/admin/datastore/${STORE}/namespace`, {
    name: 'mirror',
  });
  assert.equal(created, 'mirror');
  const upid = await dstApi.call<string>('POST', '/admin/sync/from-site-a/run');
  const res = await taskEnd(dstApi, upid);
  assert.equal(res.status, 'OK', res.log.join('\n'));
  assert.ok(
    res.log.some((l) =>
      l.endsWith(`Starting datastore sync job 'site-a:${STORE}:${STORE}:mirror:from-site-a'`),
    ),
    res.log.join('\n'),
  );
  const mirrored = await dstApi.call<Array<{ 'backup-type': string; 'backup-id': string }>>(
    'GET',
    `/admin/datastore/${STORE}/groups`,
    { ns: 'mirror' },
  );
  assert.deepEqual(
    mirrored.map((g) => `${g['backup-type']}/${g['backup-id']}`),
    ['host/web'],
  );
  const jobs = await dstApi.call<Array<{ id: string; 'last-run-state'?: string; 'next-run'?: number }>>(
    'GET',
    '/admin/sync',
  );
  const job = jobs.find((j) => j.id === 'from-site-a');
  assert.equal(job?.['last-run-state'], 'OK');
  assert.ok(job?.['next-run']);

  // a user with Datastore.Backup on the target but no Remote.Read may not create a sync job
  await dstApi.call('POST', '/access/users', { userid: 'op@pbs', password: 'op-password-1' });
  await dstApi.call('PUT', '/access/acl', {
    path: `/datastore/${STORE}`,
    role: 'DatastoreBackup',
    'auth-id': 'op@pbs',
  });
  const op = await loginApi(dst, 'op-password-1', 'op@pbs');
  await assert.rejects(
    op.call('POST', '/config/sync', { id: 'sneaky', store: STORE, remote: 'site-a', 'remote-store': STORE }),
    (err: Error & { status?: number }) => err.status === 403 && /Remote\.Read/.test(err.message),
  );
  // nor run the existing one, nor see it (no Remote.Audit)
  await assert.rejects(
    op.call('POST', '/admin/sync/from-site-a/run'),
    (err: Error & { status?: number }) => err.status === 403,
  );
  assert.deepEqual(await op.call('GET', '/config/sync'), []);
});

/** Push src into dst's namespace `pushed`; the task's outcome on src. */
async function push(params: Record<string, unknown> = {}): Promise<{ status: string; log: string[] }> {
  const upid = await srcApi.call<string>('POST', '/push', {
    store: STORE,
    remote: 'site-b',
    'remote-store': STORE,
    'remote-ns': 'pushed',
    ...params,
  });
  return taskEnd(srcApi, upid);
}

const pushedSnapshots = async () =>
  (
    await dstApi.call<Array<{ 'backup-type': string; 'backup-id': string; 'backup-time': number }>>(
      'GET',
      `/admin/datastore/${STORE}/snapshots`,
      { ns: 'pushed' },
    )
  )
    .map((s) => `${s['backup-type']}/${s['backup-id']}/${s['backup-time']}`)
    .sort();

test('a push writes every snapshot into the remote through its backup protocol; restores from there are identical; a second push uploads nothing', async () => {
  const first = await push();
  assert.equal(first.status, 'OK', first.log.join('\n'));
  assert.ok(first.log.some((l) => l.includes('Successfully created new namespace pushed on remote')));
  assert.deepEqual(await pushedSnapshots(), await snapshotsOf(srcApi));

  const out = join(dst.root, 'restored-pushed');
  const r = await runClient(
    ['restore', snapshotName('web', T0 + 120), 'root.tar', out, '--ns', 'pushed'],
    dst.env,
  );
  assert.equal(r.code, 0, r.stderr);
  assert.equal(readFileSync(join(out, 'changing.txt'), 'utf8'), 'third web\n');
  assert.deepEqual(readFileSync(join(out, 'f3')), readFileSync(join(tree, 'f3')));

  const again = await push();
  assert.equal(again.status, 'OK', again.log.join('\n'));
  assert.ok(
    again.log.some((l) => /Summary: 0 snapshot\(s\) pushed, 0 chunk\(s\) uploaded/.test(l)),
    again.log.join('\n'),
  );

  // a new snapshot of the same data: its chunks are only appended, known from the remote's previous snapshot
  assert.equal((await runTreeBackup(src.env, tree, 'web', T0 + 180)).code, 0);
  const incremental = await push();
  assert.equal(incremental.status, 'OK', incremental.log.join('\n'));
  assert.ok(
    incremental.log.some((l) =>
      /Summary: 1 snapshot\(s\) pushed, 0 chunk\(s\) uploaded \(0 bytes\), [1-9]\d* chunk\(s\) already on the remote/.test(
        l,
      ),
    ),
    incremental.log.join('\n'),
  );
});

test('push under maintenance: the remote read-only fails the task with its message and leaves nothing; the source offline refuses at once; read-only pushes', async () => {
  writeFileSync(join(tree, 'changing.txt'), 'fifth web\n');
  assert.equal((await runTreeBackup(src.env, tree, 'web', T0 + 240)).code, 0);
  await setMode(dstApi, 'type=read-only,message=remote frozen for audit');
  try {
    const refused = await push();
    assert.notEqual(refused.status, 'OK');
    assert.ok(
      refused.log.some((l) => l.includes('remote frozen for audit')),
      refused.log.join('\n'),
    );
    assert.equal((await pushedSnapshots()).includes(`host/web/${T0 + 240}`), false);
  } finally {
    await setMode(dstApi, undefined);
  }

  await setMode(srcApi, 'type=offline,message=source out');
  try {
    await assert.rejects(
      srcApi.call('POST', '/push', {
        store: STORE,
        remote: 'site-b',
        'remote-store': STORE,
        'remote-ns': 'pushed',
      }),
      (err: Error & { status?: number }) => err.status === 503 && /source out/.test(err.message),
    );
  } finally {
    await setMode(srcApi, undefined);
  }

  await setMode(srcApi, 'type=read-only,message=source read-only');
  try {
    const ok = await push();
    assert.equal(ok.status, 'OK', ok.log.join('\n'));
    assert.ok((await pushedSnapshots()).includes(`host/web/${T0 + 240}`));
  } finally {
    await setMode(srcApi, undefined);
  }
});

test('push with remove-vanished forgets on the remote exactly the snapshots gone from the source', async () => {
  const before = await pushedSnapshots();
  await srcApi.call('DELETE', `/admin/datastore/${STORE}/snapshots`, {
    'backup-type': 'host',
    'backup-id': 'web',
    'backup-time': T0 + 180,
  });
  const res = await push({ 'remove-vanished': true });
  assert.equal(res.status, 'OK', res.log.join('\n'));
  assert.deepEqual(
    await pushedSnapshots(),
    before.filter((s) => s !== `host/web/${T0 + 180}`),
  );
  assert.ok(res.log.some((l) => l.includes(`Removed vanished snapshot host/web/`)));
});

test('a push sync job runs now and is listed among push jobs only', async () => {
  await srcApi.call('POST', '/config/sync', {
    id: 'to-site-b',
    store: STORE,
    remote: 'site-b',
    'remote-store': STORE,
    'remote-ns': 'jobpushed',
    'sync-direction': 'push',
  });
  const res = await taskEnd(srcApi, await srcApi.call<string>('POST', '/admin/sync/to-site-b/run'));
  assert.equal(res.status, 'OK', res.log.join('\n'));
  assert.ok(res.log.some((l) => l.endsWith(`sync datastore '${STORE}' to 'site-b/${STORE}'`)));
  const remote = await dstApi.call<unknown[]>('GET', `/admin/datastore/${STORE}/snapshots`, {
    ns: 'jobpushed',
  });
  assert.equal(remote.length, (await snapshotsOf(srcApi)).length);
  const ids = async (dir?: string) =>
    (
      await srcApi.call<Array<{ id: string }>>('GET', '/admin/sync', dir ? { 'sync-direction': dir } : {})
    ).map((j) => j.id);
  assert.deepEqual(await ids(), []);
  assert.deepEqual(await ids('push'), ['to-site-b']);
  await assert.rejects(
    srcApi.call('POST', '/config/sync', {
      id: 'bad-push',
      store: STORE,
      'remote-store': 'elsewhere',
      'sync-direction': 'push',
    }),
    (err: Error & { status?: number }) => err.status === 400 && /needs a remote/.test(err.message),
  );
});

test('the CLI pulls now following the task, lists sync jobs and remotes, scans a remote, and errs in one line', async () => {
  const admin = (args: string[]) =>
    runCli(STOWAGE_BIN, [
      '--config-dir',
      join(dst.root, 'etc'),
      '--server',
      `127.0.0.1:${dst.port}`,
      ...args,
    ]);
  const pulled = await admin(['pull', 'site-a', STORE, STORE, '--ns', 'cli', '--group-filter', 'type:host']);
  assert.equal(pulled.code, 0, pulled.stderr);
  assert.match(pulled.stdout + pulled.stderr, /Summary: \d+ snapshot\(s\) synced/);
  const listed = await dstApi.call<unknown[]>('GET', `/admin/datastore/${STORE}/snapshots`, { ns: 'cli' });
  assert.equal(listed.length, (await snapshotsOf(srcApi)).length);

  const jobs = await admin(['sync-job', 'list', '--output-format', 'json']);
  assert.equal(jobs.code, 0, jobs.stderr);
  assert.deepEqual(
    (JSON.parse(jobs.stdout) as Array<{ id: string }>).map((j) => j.id),
    ['from-site-a'],
  );

  const remotes = await admin(['remote', 'list', '--output-format', 'json']);
  assert.equal(remotes.code, 0, remotes.stderr);
  assert.deepEqual(
    (JSON.parse(remotes.stdout) as Array<{ name: string }>).map((r) => r.name),
    ['site-a'],
  );
  assert.ok(!remotes.stdout.includes(ROOT_PASSWORD), 'no secret printed');
  const scan = await admin(['remote', 'scan', 'site-a']);
  assert.equal(scan.code, 0, scan.stderr);
  assert.match(scan.stdout, new RegExp(`^${STORE}\\b`, 'm'));
  const bad = await admin([
    'remote',
    'create',
    'bad-host',
    '--host',
    'not a host',
    '--auth-id',
    'a@pbs',
    '--password',
    'x',
  ]);
  assert.notEqual(bad.code, 0);
  assert.match(bad.stderr, /invalid host 'not a host'/);
  assert.equal(bad.stderr.trim().split('\n').length, 1, bad.stderr);

  const missing = await admin(['pull', 'nosuch', STORE, STORE]);
  assert.notEqual(missing.code, 0);
  assert.match(missing.stderr, /remote 'nosuch' does not exist/);
  assert.equal(missing.stderr.trim().split('\n').length, 1, missing.stderr);
});

/**
 * POST `path` with its parameters in the query string and/or a form-encoded body (as the PBS web
 * UI and other clients send them, not as our JSON client does); the task's UPID.
 */
function postRaw(api: ApiClient, path: string, opts: { query?: string; form?: string }): Promise<string> {
  return new Promise((resolve, reject) => {
    const req = httpsRequest(
      {
        host: api.target.host,
        port: api.target.port,
        method: 'POST',
        path: `/api2/json${path}${opts.query ? `?${opts.query}` : ''}`,
        rejectUnauthorized: false, // loopback test server with its own certificate
        headers: {
          ...authHeaders(api.credentials, 'POST'),
          ...(opts.form !== undefined && { 'content-type': 'application/x-www-form-urlencoded' }),
        },
      },
      (res) => {
        const parts: Buffer[] = [];
        res.on('data', (d: Buffer) => parts.push(d));
        res.on('end', () => {
          const text = Buffer.concat(parts).toString();
          if (res.statusCode !== 200) reject(new Error(`HTTP ${res.statusCode}: ${text}`));
          else resolve((JSON.parse(text) as { data: string }).data);
        });
      },
    );
    req.on('error', reject);
    req.end(opts.form);
  });
}

test('verified-only and encrypted-only select by the remote listing (form body, query), resync-corrupt is refused for a push', async () => {
  // the source's newest host/web snapshot is verified, and a newer one made that is not
  const web = (
    await srcApi.call<Array<{ 'backup-id': string; 'backup-time': number }>>(
      'GET',
      `/admin/datastore/${STORE}/snapshots`,
      { 'backup-type': 'host', 'backup-id': 'web' },
    )
  )
    .map((x) => x['backup-time'])
    .sort((a, b) => a - b);
  const checked = web.at(-1)!;
  const verify = await srcApi.call<string>('POST', `/admin/datastore/${STORE}/verify`, {
    'backup-type': 'host',
    'backup-id': 'web',
    'backup-time': checked,
  });
  assert.equal((await taskEnd(srcApi, verify)).status, 'OK');
  const fresh = await runTreeBackup(src.env, tree, 'web', checked + 60);
  assert.equal(fresh.code, 0, fresh.stderr);

  // a pull with the flag in a form body brings the verified one only
  const pulled = await taskEnd(
    dstApi,
    await postRaw(dstApi, '/pull', {
      form: `store=${STORE}&remote=site-a&remote-store=${STORE}&ns=verified&verified-only=1`,
    }),
  );
  assert.equal(pulled.status, 'OK', pulled.log.join('\n'));
  const verified = await dstApi.call<Array<{ 'backup-id': string; 'backup-time': number }>>(
    'GET',
    `/admin/datastore/${STORE}/snapshots`,
    { ns: 'verified' },
  );
  assert.deepEqual(
    verified.map((s) => `${s['backup-id']}/${s['backup-time']}`),
    [`web/${checked}`],
  );
  assert.ok(
    pulled.log.some((l) =>
      l.endsWith(
        `host/web: skipped: ${web.length} snapshot(s) - not verified or not encrypted (verified-only/encrypted-only)`,
      ),
    ),
    pulled.log.join('\n'),
  );

  // a sync job keeps the flag in sync.cfg, runs with it, and drops it with `delete`
  await dstApi.call('POST', '/config/sync', {
    id: 'verified-job',
    store: STORE,
    ns: 'verified-job',
    remote: 'site-a',
    'remote-store': STORE,
    'verified-only': true,
  });
  assert.match(readFileSync(join(dst.root, 'etc', 'sync.cfg'), 'utf8'), /\n\tverified-only true\n/);
  const ran = await taskEnd(dstApi, await dstApi.call<string>('POST', '/admin/sync/verified-job/run'));
  assert.equal(ran.status, 'OK', ran.log.join('\n'));
  assert.deepEqual(
    (
      await dstApi.call<Array<{ 'backup-time': number }>>('GET', `/admin/datastore/${STORE}/snapshots`, {
        ns: 'verified-job',
      })
    ).map((x) => x['backup-time']),
    [checked],
  );
  await dstApi.call('PUT', '/config/sync/verified-job', { delete: ['verified-only'] });
  assert.equal(
    (await dstApi.call<Record<string, unknown>>('GET', '/config/sync/verified-job'))['verified-only'],
    undefined,
  );

  // a push with the flag in the query (no body): nothing here is encrypted, nothing is pushed
  const pushed = await taskEnd(
    srcApi,
    await postRaw(srcApi, '/push', {
      query: `store=${STORE}&remote=site-b&remote-store=${STORE}&remote-ns=encrypted&encrypted-only=true`,
    }),
  );
  assert.equal(pushed.status, 'OK', pushed.log.join('\n'));
  assert.ok(
    pushed.log.some((l) => /Summary: 0 snapshot\(s\) pushed/.test(l)),
    pushed.log.join('\n'),
  );
  assert.deepEqual(await dstApi.call('GET', `/admin/datastore/${STORE}/snapshots`, { ns: 'encrypted' }), []);

  // resync-corrupt is a pull's option: a push, or a push job, is refused with 400 naming it
  await assert.rejects(
    push({ 'resync-corrupt': true }),
    (err: Error & { status?: number }) => err.status === 400 && /resync-corrupt/.test(err.message),
  );
  await assert.rejects(
    srcApi.call('POST', '/config/sync', {
      id: 'push-resync',
      store: STORE,
      remote: 'site-b',
      'remote-store': STORE,
      'sync-direction': 'push',
      'resync-corrupt': false,
    }),
    (err: Error & { status?: number }) =>
      err.status === 400 && /push jobs do not support resync-corrupt option/.test(err.message),
  );
  assert.equal(
    (await srcApi.call<Array<{ id: string }>>('GET', '/config/sync')).some((j) => j.id === 'push-resync'),
    false,
  );
});

test('worker-threads pulls groups at once with labelled logs; out of 1 to 32 it is a 400 naming it', async () => {
  const res = await pull({ ns: 'parallel', 'worker-threads': 2 });
  assert.equal(res.status, 'OK', res.log.join('\n'));
  assert.deepEqual(
    await dstApi
      .call<unknown[]>('GET', `/admin/datastore/${STORE}/snapshots`, { ns: 'parallel' })
      .then((x) => x.length),
    (await srcApi.call<unknown[]>('GET', `/admin/datastore/${STORE}/snapshots`)).length,
  );
  assert.ok(
    res.log.some((l) => /\[host\/web\]: .*sync done$/.test(l)),
    res.log.join('\n'),
  );
  for (const bad of [0, 33])
    await assert.rejects(
      pull({ 'worker-threads': bad }),
      (err: Error & { status?: number }) => err.status === 400 && /worker-threads/.test(err.message),
    );
});

test('a push job pushes what its owner may read; a user who may not read the store names itself as owner', async () => {
  // a group of the pushing user's own, among root's
  const mine = await runTreeBackup(src.env, tree, 'mine', T0);
  assert.equal(mine.code, 0, mine.stderr);
  await srcApi.call('POST', '/access/users', { userid: 'pusher@pbs', password: 'pusher-password-1' });
  await srcApi.call('POST', `/admin/datastore/${STORE}/change-owner`, {
    'backup-type': 'host',
    'backup-id': 'mine',
    'new-owner': 'pusher@pbs',
  });
  const grant = (path: string, role: string) =>
    srcApi.call('PUT', '/access/acl', { path, role, 'auth-id': 'pusher@pbs' });
  await grant('/remote/site-b', 'RemoteSyncPushOperator');
  await grant(`/datastore/${STORE}`, 'DatastoreBackup');
  const pusher = await loginApi(src, 'pusher-password-1', 'pusher@pbs');
  const job = (id: string, owner?: string) =>
    pusher.call('POST', '/config/sync', {
      id,
      store: STORE,
      remote: 'site-b',
      'remote-store': STORE,
      'remote-ns': 'owned',
      'sync-direction': 'push',
      ...(owner && { owner }),
    });
  const forbidden = (priv: string) => (err: Error & { status?: number }) =>
    err.status === 403 && err.message.includes(priv);
  await assert.rejects(job('owned-a', 'pusher@pbs'), forbidden('Datastore.Audit'));
  await grant(`/datastore/${STORE}`, 'DatastoreAudit');
  // root@pam (the default owner) would push every group: naming it needs Datastore.Modify
  await assert.rejects(job('owned-b'), forbidden('Datastore.Modify'));
  await job('owned-c', 'pusher@pbs');
  const res = await taskEnd(srcApi, await srcApi.call<string>('POST', '/admin/sync/owned-c/run'));
  assert.equal(res.status, 'OK', res.log.join('\n'));
  const pushed = await dstApi.call<Array<{ 'backup-id': string }>>(
    'GET',
    `/admin/datastore/${STORE}/snapshots`,
    {
      ns: 'owned',
    },
  );
  assert.deepEqual(
    pushed.map((s) => s['backup-id']),
    ['mine'],
  );
});
