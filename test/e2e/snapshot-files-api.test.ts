import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { request as httpsRequest } from 'node:https';
import { join } from 'node:path';
import { BackupGroup, BackupNamespace } from '../../src/datastore/backup-info.js';
import { encodeBlob } from '../../src/datastore/data-blob.js';
import { sha256 } from '../../src/datastore/digest.js';
import { DynamicIndexWriter } from '../../src/datastore/dynamic-index.js';
import { decodeManifest, newManifest, storeManifest } from '../../src/datastore/manifest.js';
import { chunkFilePath } from '../../src/datastore/chunk-store.js';
import { writeChunkFile } from '../helpers/chunk-files.js';
import { listTree } from '../helpers/files.js';
import { startTestServer, type Auth, type TestServer } from '../helpers/https-api.js';
import { writeSnapshots } from '../helpers/snapshot-fixture.js';
import { datastoreInternals } from '../helpers/datastore-internals.js';

let t: TestServer;
let storePath: string;
let alice: Auth;
let reader: Auth;
let nobody: Auth;
const STORE = 'files1';
const T1 = 1717236000; // 2024-06-01T10:00:00Z
const T2 = 1717322400;
const ROOT_VM = `backup-type=vm&backup-id=100&backup-time=${T1}`;
const ALICE_HOST = `backup-type=host&backup-id=alice&backup-time=${T1}`;
const ARCHIVE = 'ns/dyn/host/web/2024-06-01T10:00:00Z';
/** The content of the dynamic archive: three chunks of different sizes. */
const PARTS = [Buffer.alloc(5000, 'a'), Buffer.alloc(70_000, 'b'), Buffer.alloc(123, 'c')];
const CONFIG = Buffer.from('memory: 2048\ncores: 2\n');

interface RawReply {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: Buffer;
}

/** A request whose reply (or body) is not JSON: downloads and the log upload. */
function raw(
  method: string,
  path: string,
  opts: { auth: Auth; body?: Buffer; contentType?: string; abortAfter?: number },
): Promise<RawReply> {
  const headers: Record<string, string> = {};
  if (opts.auth.ticket) headers.cookie = `PBSAuthCookie=${encodeURIComponent(opts.auth.ticket)}`;
  if (opts.auth.csrf) headers.CSRFPreventionToken = opts.auth.csrf;
  if (opts.body) {
    headers['content-type'] = opts.contentType ?? 'application/octet-stream';
    headers['content-length'] = String(opts.body.length);
  }
  const url = new URL(`/api2/json${path}`, t.server.url);
  return new Promise((resolve, reject) => {
    // a connection of its own: an aborted download must not leave a broken socket in the pool
    const req = httpsRequest(url, { method, headers, rejectUnauthorized: false, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      let received = 0;
      res.on('data', (c: Buffer) => {
        chunks.push(c);
        received += c.length;
        if (opts.abortAfter !== undefined && received >= opts.abortAfter) {
          res.destroy();
          resolve({ status: res.statusCode!, headers: res.headers, body: Buffer.concat(chunks) });
        }
      });
      res.on('end', () =>
        resolve({ status: res.statusCode!, headers: res.headers, body: Buffer.concat(chunks) }),
      );
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(opts.body);
  });
}

const json = (r: RawReply) => JSON.parse(r.body.toString()) as { message?: string; data?: unknown };

async function setMode(mode: string | null): Promise<void> {
  const body = mode === null ? { delete: 'maintenance-mode' } : { 'maintenance-mode': mode };
  const res = await t.api('PUT', `/config/datastore/${STORE}`, { auth: t.root, body });
  assert.equal(res.status, 200, JSON.stringify(res.body));
}

async function activeOps(): Promise<{ read: number; write: number }> {
  const res = await t.api('GET', `/admin/datastore/${STORE}/active-operations`, { auth: t.root });
  const { read, write } = res.body.data as { read: number; write: number };
  return { read, write };
}

/**
 * The counts once a finished download's release has run: the client sees the last byte a moment
 * before the server's stream closes and releases the operation.
 */
async function settledOps(): Promise<{ read: number; write: number }> {
  const deadline = Date.now() + 5000;
  let ops = await activeOps();
  while (Date.now() < deadline && (ops.read !== 0 || ops.write !== 0)) {
    await new Promise((r) => setTimeout(r, 20));
    ops = await activeOps();
  }
  return ops;
}

/**
 * A snapshot `ns dyn: host/web` with a three-chunk dynamic index, a config blob, and an
 * `encrypted.conf.blob` the manifest marks encrypted, written as the backup protocol writes them.
 */
async function writeArchiveSnapshot(): Promise<void> {
  const handle = await t.server.context.datastores.lookupDatastore(STORE, 'ingest', { kind: 'test-fixture' });
  try {
    const ds = datastoreInternals(handle.datastore);
    const ns = BackupNamespace.parse('dyn');
    await ds.createNamespace(ns);
    const group = new BackupGroup(ns, 'host', 'web');
    const { lock: groupLock } = await ds.createLockedBackupGroup(group, 'root@pam');
    const dir = group.snapshot(T1);
    const { path, lock } = await ds.createLockedBackupDir(dir);
    try {
      const w = DynamicIndexWriter.create(join(path, 'root.pxar.didx'));
      let end = 0;
      for (const part of PARTS) {
        const digest = sha256(part);
        writeChunkFile(ds.basePath, digest, encodeBlob(part));
        end += part.length;
        w.addChunk(end, digest);
      }
      const idx = w.close();
      const conf = encodeBlob(CONFIG);
      writeFileSync(join(path, 'qemu-server.conf.blob'), conf);
      const secret = encodeBlob(Buffer.from('pretend ciphertext'));
      writeFileSync(join(path, 'encrypted.conf.blob'), secret);
      const m = newManifest('host', 'web', T1);
      m.files.push(
        { filename: 'root.pxar.didx', 'crypt-mode': 'none', size: idx.size, csum: idx.csum.toString('hex') },
        {
          filename: 'qemu-server.conf.blob',
          'crypt-mode': 'none',
          size: conf.length,
          csum: sha256(conf).toString('hex'),
        },
        {
          filename: 'encrypted.conf.blob',
          'crypt-mode': 'encrypt',
          size: secret.length,
          csum: sha256(secret).toString('hex'),
        },
      );
      storeManifest(path, m);
    } finally {
      lock.release();
      groupLock.release();
    }
  } finally {
    await handle.release();
  }
}

before(async () => {
  t = await startTestServer({ prefix: 'stowage-e2e-files-' });
  storePath = await t.addBareDatastore(STORE);
  await writeSnapshots(t.server.context.datastores, STORE, [
    { type: 'vm', id: '100', time: T1, owner: 'root@pam', label: 'vm' },
    { type: 'host', id: 'alice', time: T1, owner: 'alice@pbs', label: 'alice' },
    { type: 'host', id: 'alice', time: T2, owner: 'alice@pbs', label: 'alice2' },
  ]);
  await writeArchiveSnapshot();
  alice = await t.addUser('alice@pbs', [{ path: `/datastore/${STORE}`, role: 'DatastoreBackup' }]);
  reader = await t.addUser('reader@pbs', [{ path: `/datastore/${STORE}`, role: 'DatastoreReader' }]);
  nobody = await t.addUser('nobody@pbs', [{ path: `/datastore/${STORE}`, role: 'DatastoreAudit' }]);
});

after(async () => {
  await t?.close();
});

const dl = (what: 'download' | 'download-decoded', query: string, auth: Auth = t.root) =>
  raw('GET', `/admin/datastore/${STORE}/${what}?${query}`, { auth });

test('download sends a snapshot file byte for byte as application/octet-stream', async () => {
  for (const name of ['drive-scsi0.img.fidx', 'index.json.blob']) {
    const res = await dl('download', `${ROOT_VM}&file-name=${name}`);
    assert.equal(res.status, 200, res.body.toString());
    assert.equal(res.headers['content-type'], 'application/octet-stream');
    assert.ok(res.body.equals(readFileSync(join(storePath, 'vm/100/2024-06-01T10:00:00Z', name))), name);
  }
  assert.deepEqual(await settledOps(), { read: 0, write: 0 }, 'each download released its operation');
});

test('download-decoded streams an index as its archive, a blob as its payload, and accepts names without the server extension', async () => {
  const fidx = await dl('download-decoded', `${ROOT_VM}&file-name=drive-scsi0.img.fidx`);
  assert.equal(fidx.status, 200);
  const chunk = (n: number) => Buffer.alloc(4096, `vm:${n};`);
  assert.ok(fidx.body.equals(Buffer.concat([chunk(0), chunk(1)])), 'the image read back from its chunks');
  const short = await dl('download-decoded', `${ROOT_VM}&file-name=drive-scsi0.img`);
  assert.ok(short.body.equals(fidx.body), 'drive-scsi0.img names drive-scsi0.img.fidx, as in PBS');

  const q = `ns=dyn&backup-type=host&backup-id=web&backup-time=${T1}`;
  const didx = await dl('download-decoded', `${q}&file-name=root.pxar`);
  assert.equal(didx.status, 200, didx.body.toString());
  assert.equal(didx.headers['content-length'], String(75_123));
  assert.ok(didx.body.equals(Buffer.concat(PARTS)));

  const conf = await dl('download-decoded', `${q}&file-name=qemu-server.conf`);
  assert.ok(conf.body.equals(CONFIG));
  const manifest = await dl('download-decoded', `${q}&file-name=index.json.blob`);
  const decoded = JSON.parse(manifest.body.toString()) as { 'backup-id': string };
  assert.equal(decoded['backup-id'], 'web');
  assert.deepEqual(
    decodeManifest(readFileSync(join(storePath, ARCHIVE, 'index.json.blob'))),
    JSON.parse(manifest.body.toString()),
  );
  assert.deepEqual(await settledOps(), { read: 0, write: 0 });
});

test('download-decoded refuses encrypted files, files outside the manifest and damaged indexes', async () => {
  const q = `ns=dyn&backup-type=host&backup-id=web&backup-time=${T1}`;
  const enc = await dl('download-decoded', `${q}&file-name=encrypted.conf.blob`);
  assert.equal(enc.status, 400);
  assert.equal(json(enc).message, "cannot decode 'encrypted.conf.blob' - is encrypted");
  const raw = await dl('download', `${q}&file-name=encrypted.conf.blob`);
  assert.equal(raw.status, 200, 'the raw file of an encrypted archive is still downloadable');

  const path = join(storePath, ARCHIVE, 'root.pxar.didx');
  const good = readFileSync(path);
  try {
    writeFileSync(join(storePath, ARCHIVE, 'extra.didx'), good);
    const extra = await dl('download-decoded', `${q}&file-name=extra.didx`);
    assert.equal(extra.status, 400);
    assert.equal(json(extra).message, "manifest does not contain file 'extra.didx'");

    const bad = Buffer.from(good);
    bad[bad.length - 1]! ^= 0xff; // the last digest
    writeFileSync(path, bad);
    const corrupt = await dl('download-decoded', `${q}&file-name=root.pxar.didx`);
    assert.equal(corrupt.status, 500);
    assert.equal(json(corrupt).message, "wrong checksum for file 'root.pxar.didx'");
  } finally {
    writeFileSync(path, good);
    rmSync(join(storePath, ARCHIVE, 'extra.didx'), { force: true });
  }
});

test('a chunk missing in the middle of an archive aborts the download instead of sending a short file as complete', async () => {
  const q = `ns=dyn&backup-type=host&backup-id=web&backup-time=${T1}`;
  const handle = await t.server.context.datastores.lookupDatastore(STORE, 'read', { kind: 'test' });
  const chunkPath = chunkFilePath(datastoreInternals(handle.datastore).basePath, sha256(PARTS[1]!));
  await handle.release();
  const saved = readFileSync(chunkPath);
  rmSync(chunkPath);
  try {
    const res = await dl('download-decoded', `${q}&file-name=root.pxar`).catch((err: Error) => err);
    // the length was announced, so the client knows the archive is incomplete
    assert.ok(res instanceof Error, `the download must fail, got ${JSON.stringify(res)}`);
    assert.match(res.message, /aborted|socket hang up|ECONNRESET/);
  } finally {
    writeFileSync(chunkPath, saved);
  }
  assert.deepEqual(await settledOps(), { read: 0, write: 0 }, 'the failed download released its operation');
});

test('a download the client abandons releases its operation', async () => {
  const q = `ns=dyn&backup-type=host&backup-id=web&backup-time=${T1}`;
  const res = await raw('GET', `/admin/datastore/${STORE}/download-decoded?${q}&file-name=root.pxar`, {
    auth: t.root,
    abortAfter: 1,
  });
  assert.equal(res.status, 200);
  assert.deepEqual(await settledOps(), { read: 0, write: 0 });
});

test('file-name must be a plain archive name: traversal, other files and missing files are refused', async () => {
  const cases: Array<['download' | 'download-decoded', string, number, RegExp]> = [
    ['download', '../../../owner', 400, /file-name/],
    ['download', '..%2Findex.json.blob', 400, /file-name/],
    ['download', '.protected', 400, /file-name/],
    ['download', 'owner', 400, /invalid file-name 'owner': not an archive name/],
    ['download', 'drive-scsi0.img.tmp_fidx', 400, /not an archive name/],
    ['download', '', 400, /file-name/],
    [
      'download',
      'nope.blob',
      404,
      /file 'nope.blob' does not exist in snapshot 'vm\/100\/2024-06-01T10:00:00Z'/,
    ],
    ['download-decoded', 'x.unknown', 400, /failed to parse archive type for 'x.unknown'/],
    ['download-decoded', '../index.json.blob', 400, /file-name/],
  ];
  for (const [what, name, status, message] of cases) {
    const res = await dl(what, `${ROOT_VM}&file-name=${name}`);
    assert.equal(res.status, status, `${what} ${name}: ${res.body.toString()}`);
    assert.match(json(res).message!, message);
  }
  const missing = await dl(
    'download',
    `backup-type=vm&backup-id=100&backup-time=${T2}&file-name=index.json.blob`,
  );
  assert.equal(missing.status, 404);
  const noName = await dl('download', ROOT_VM);
  assert.equal(noName.status, 400);
  assert.match(json(noName).message!, /'file-name': parameter is missing/);
});

test('downloads need Datastore.Read, or Datastore.Backup on an owned group', async () => {
  const own = await dl('download-decoded', `${ALICE_HOST}&file-name=drive-scsi0.img`, alice);
  assert.equal(own.status, 200, own.body.toString());
  const other = await dl('download', `${ROOT_VM}&file-name=index.json.blob`, alice);
  assert.equal(other.status, 403);
  assert.equal(json(other).message, 'backup owner check failed (alice@pbs != root@pam)');
  const anyone = await dl('download', `${ALICE_HOST}&file-name=index.json.blob`, reader);
  assert.equal(anyone.status, 200, 'Datastore.Read reads every group');
  const denied = await dl('download', `${ROOT_VM}&file-name=index.json.blob`, nobody);
  assert.equal(denied.status, 403);
  assert.equal(
    json(denied).message,
    `permission check failed - missing Datastore.Read|Datastore.Backup on /datastore/${STORE}`,
  );
});

const upload = (query: string, body: Buffer, auth: Auth, contentType?: string) =>
  raw('POST', `/admin/datastore/${STORE}/upload-backup-log?${query}`, { auth, body, contentType });

test("the owner uploads the client log once; it is stored as client.log.blob and listed with the snapshot's files", async () => {
  const log = encodeBlob(Buffer.from('backup started\nbackup finished\n'));
  const res = await upload(ALICE_HOST, log, alice);
  assert.equal(res.status, 200, res.body.toString());
  assert.deepEqual(json(res), { data: null });
  const stored = join(storePath, 'host/alice/2024-06-01T10:00:00Z/client.log.blob');
  assert.ok(readFileSync(stored).equals(log));

  const files = await t.api('GET', `/admin/datastore/${STORE}/files?${ALICE_HOST}`, { auth: alice });
  assert.ok((files.body.data as Array<{ filename: string }>).some((f) => f.filename === 'client.log.blob'));
  const back = await dl('download-decoded', `${ALICE_HOST}&file-name=client.log`, alice);
  assert.equal(back.body.toString(), 'backup started\nbackup finished\n');

  const again = await upload(ALICE_HOST, encodeBlob(Buffer.from('other')), alice);
  assert.equal(again.status, 409);
  assert.equal(json(again).message, 'backup already contains a log.');
  assert.ok(readFileSync(stored).equals(log), 'the first log is kept');
});

test('an upload with a bad blob, a wrong owner or without Datastore.Backup changes nothing', async () => {
  const q = `backup-type=host&backup-id=alice&backup-time=${T2}`;
  const snapDir = join(storePath, 'host/alice/2024-06-02T10:00:00Z');
  const before = listTree(snapDir);
  const log = encodeBlob(Buffer.from('log'));
  const badCrc = Buffer.from(log);
  badCrc[badCrc.length - 1]! ^= 1;
  const cases: Array<[string, Buffer, Auth, number, RegExp, string?]> = [
    [q, badCrc, alice, 400, /CRC mismatch/],
    [q, Buffer.from('not a blob at all'), alice, 400, /wrong magic number/],
    [q, log, t.root, 403, /^backup owner check failed \(root@pam != alice@pbs\)$/], // even root: PBS wants the owner
    [q, log, reader, 403, /^permission check failed - missing Datastore\.Backup on \/datastore\/files1$/],
    [`backup-type=host&backup-id=alice&backup-time=1`, log, alice, 404, /does not exist/],
    [`backup-type=host&backup-id=../alice&backup-time=${T2}`, log, alice, 400, /'backup-id'/],
    [q, log, alice, 400, /unsupported content type|request body must be the log blob/, 'text/plain'],
  ];
  for (const [query, body, auth, status, message, type] of cases) {
    const res = await upload(query, body, auth, type);
    assert.equal(res.status, status, `${query} ${type ?? ''}: ${res.body.toString()}`);
    assert.match(json(res).message!, message);
  }
  assert.deepEqual(listTree(snapDir), before, 'no refused upload left a file behind');
});

test('read-only maintenance serves downloads but refuses the log upload with its message; offline refuses all', async () => {
  const q = `backup-type=host&backup-id=alice&backup-time=${T2}`;
  const log = encodeBlob(Buffer.from('log'));
  await setMode('read-only,message="disk swap"');
  try {
    assert.equal((await dl('download', `${ROOT_VM}&file-name=index.json.blob`)).status, 200);
    assert.equal((await dl('download-decoded', `${ROOT_VM}&file-name=drive-scsi0.img`)).status, 200);
    const res = await upload(q, log, alice);
    assert.equal(res.status, 503);
    assert.equal(
      json(res).message,
      `datastore '${STORE}' is unavailable: read-only maintenance mode: disk swap`,
    );
  } finally {
    await setMode(null);
  }
  await setMode('offline,message="fsck"');
  try {
    for (const res of [
      await dl('download', `${ROOT_VM}&file-name=index.json.blob`),
      await dl('download-decoded', `${ROOT_VM}&file-name=drive-scsi0.img`),
      await upload(q, log, alice),
    ]) {
      assert.equal(res.status, 503, res.body.toString());
      assert.equal(json(res).message, `datastore '${STORE}' is unavailable: offline maintenance mode: fsck`);
    }
  } finally {
    await setMode(null);
  }
  assert.ok(!existsSync(join(storePath, 'host/alice/2024-06-02T10:00:00Z/client.log.blob')));
});
