import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { crc32 } from 'node:zlib';
import { BackupWriter, type BackupTarget } from '../../src/client/backup-writer.js';
import { BackupReader } from '../../src/client/backup-reader.js';
import { ChunkPool } from '../../src/client/chunk-pool.js';
import { openProtocolSession } from '../../src/client/connection.js';
import { blobKind, encodeBlob } from '../../src/datastore/data-blob.js';
import { setMaintenanceMode } from '../../src/maintenance/maintenance-control.js';
import { startProtocolServer, type ProtocolServer } from './protocol-server.js';

let srv: ProtocolServer;
let pool: ChunkPool;
let storePath: string;
const CHUNK = 64 * 1024; // small average so a few MB make many chunks

before(async () => {
  srv = await startProtocolServer();
  storePath = await srv.instance.createStore('store1', {}, { full: true });
  pool = new ChunkPool({ threads: 2 });
});

after(async () => {
  await pool.close();
  await srv.close();
});

function spec(id: string, time: number): BackupTarget {
  return {
    target: { host: srv.host, port: srv.port },
    policy: { fingerprint: srv.fingerprint },
    credentials: srv.root,
    store: 'store1',
    backupType: 'host',
    backupId: id,
    backupTime: time,
  };
}

async function* pieces(data: Buffer, size = 100_000): AsyncGenerator<Buffer> {
  for (let off = 0; off < data.length; off += size) yield data.subarray(off, off + size);
}

async function collect(it: AsyncIterable<Buffer>): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const p of it) parts.push(p);
  return Buffer.concat(parts);
}

/** Run `fn`; drop the session if it fails so the next test is not blocked by the group lock. */
async function guarded<T>(w: BackupWriter, fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    w.abort();
    throw err;
  }
}

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

function snapshotDirs(id: string): string[] {
  const dir = join(storePath, 'host', id);
  return existsSync(dir) ? readdirSync(dir).filter((n) => /^\d{4}-/.test(n)) : [];
}

async function waitFor(cond: () => boolean, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error('timed out waiting');
    await new Promise((r) => setTimeout(r, 20));
  }
}

const stream = Buffer.concat([
  randomBytes(1_500_000),
  Buffer.alloc(1_000_000, 'text text '),
  randomBytes(500_000),
]);
const image = Buffer.concat([randomBytes(5 * 1024 * 1024), Buffer.alloc(1234, 7)]);

test('a backup of a stream, an image and a blob restores byte for byte through the reader', async () => {
  const w = await BackupWriter.start(spec('web01', 1_700_000_000), pool);
  const [s1, s2, m] = await guarded(w, async () => {
    const a = await w.uploadStream('root.tar.didx', pieces(stream), { chunkSize: CHUNK });
    const b = await w.uploadImage('disk.img.fidx', pieces(image), image.length);
    await w.uploadBlob('notes.blob', Buffer.from('hello'));
    return [a, b, await w.finish()] as const;
  });
  assert.equal(s1.bytes, stream.length);
  assert.equal(s1.newBytes, stream.length);
  assert.equal(s2.chunks, 2);
  assert.deepEqual(
    m.files.map((f) => f.filename),
    ['disk.img.fidx', 'notes.blob', 'root.tar.didx'],
  );

  const r = await BackupReader.open({ ...spec('web01', 1_700_000_000) }, pool);
  const manifest = await r.manifest();
  assert.ok(manifest.unprotected.chunk_upload_stats!.count > 10);
  assert.equal(sha(await collect(r.chunks('root.tar.didx'))), sha(stream));
  assert.equal(sha(await collect(r.chunks('disk.img.fidx'))), sha(image));
  assert.deepEqual(await r.blob('notes.blob'), Buffer.from('hello'));
  await r.close();
  // the session's write operation and the reader's read operation are both released
  await waitFor(() => srv.instance.access.registry.list('store1').length === 0);
});

test('a second backup of unchanged data uploads no chunk data', async () => {
  const w = await BackupWriter.start(spec('web01', 1_700_000_100), pool);
  const [s1, s2, m] = await guarded(w, async () => {
    const prev = await w.previousManifest();
    assert.equal(prev?.['backup-time'], 1_700_000_000);
    const a = await w.uploadStream('root.tar.didx', pieces(stream, 77_777), { chunkSize: CHUNK });
    const b = await w.uploadImage('disk.img.fidx', pieces(image), image.length);
    return [a, b, await w.finish()] as const;
  });
  assert.equal(s1.newChunks + s2.newChunks, 0);
  assert.equal(s1.uploadedBytes + s2.uploadedBytes, 0);
  assert.equal(s1.reusedBytes, stream.length);
  assert.deepEqual(m.files.find((f) => f.filename === 'root.tar.didx')?.size, stream.length);
});

test('appending a chunk the session does not know is refused with "no such chunk"', async () => {
  const s = await openProtocolSession({
    target: { host: srv.host, port: srv.port },
    policy: { fingerprint: srv.fingerprint },
    credentials: srv.root,
    path: '/api2/json/backup',
    protocol: 'proxmox-backup-protocol-v1',
    query: { store: 'store1', 'backup-type': 'host', 'backup-id': 'probe', 'backup-time': 1_700_000_000 },
  });
  const wid = await s.json<number>('POST', 'dynamic_index', { 'archive-name': 'x.didx' });
  const digest = createHash('sha256').update('never uploaded').digest('hex');
  await assert.rejects(
    s.json('PUT', 'dynamic_index', {}, { wid, 'digest-list': [digest], 'offset-list': [0] }),
    (err: Error & { code?: string }) => err.code === 'BAD_REQUEST' && /no such chunk/.test(err.message),
  );
  const data = Buffer.from('chunk data');
  const blob = encodeBlob(data);
  await assert.rejects(
    s.request('POST', 'dynamic_chunk', { wid, digest, size: data.length, 'encoded-size': blob.length }, blob),
    /wrong digest/,
  );
  await assert.rejects(
    s.request(
      'POST',
      'dynamic_chunk',
      { wid, digest: sha(data), size: data.length, 'encoded-size': blob.length + 1 },
      blob,
    ),
    /unexpected size/,
  );
  // Content checks after the server rewrote the CRC: size, and zstd data that is not zstd.
  const text = Buffer.from('compressible '.repeat(1000));
  const zblob = encodeBlob(text);
  assert.equal(blobKind(zblob), 'compressed');
  await assert.rejects(
    s.request(
      'POST',
      'dynamic_chunk',
      { wid, digest: sha(text), size: text.length + 1, 'encoded-size': zblob.length },
      zblob,
    ),
    /wrong size/,
  );
  const garbled = Buffer.from(zblob);
  garbled.fill(0x55, 12 + 4);
  garbled.writeUInt32LE(crc32(garbled.subarray(12)), 8);
  await assert.rejects(
    s.request(
      'POST',
      'dynamic_chunk',
      { wid, digest: sha(text), size: text.length, 'encoded-size': garbled.length },
      garbled,
    ),
    /corrupt|wrong/,
  );
  // An uncompressed chunk with a wrong CRC is accepted (PBS recomputes it) and stored fixed.
  const raw = encodeBlob(data, { compress: false });
  raw.writeUInt32LE(12345, 8);
  await s.request(
    'POST',
    'dynamic_chunk',
    { wid, digest: sha(data), size: data.length, 'encoded-size': raw.length },
    raw,
  );
  const stored = readFileSync(join(storePath, '.chunks', sha(data).slice(0, 4), sha(data)));
  assert.equal(stored.readUInt32LE(8), crc32(stored.subarray(12)));
  await assert.rejects(s.json('POST', 'finish'), /open index writer/);
  assert.equal(snapshotDirs('probe').length, 1);
  s.destroy();
  // unfinished: the snapshot and the group this session created are removed
  await waitFor(() => !existsSync(join(storePath, 'host', 'probe')));
  await waitFor(() => srv.instance.access.registry.list('store1').length === 0);
});

test('a backup refused by read-only maintenance is told the message and the MAINTENANCE code, and reads go on', async () => {
  await setMaintenanceMode(srv.instance.access, 'store1', { type: 'read-only', message: 'disk swap' });
  try {
    await assert.rejects(
      BackupWriter.start(spec('web01', 1_700_000_200), pool),
      (err: Error & { code?: string }) => {
        assert.equal(err.code, 'MAINTENANCE');
        assert.equal(err.message, "datastore 'store1' is unavailable: read-only maintenance mode: disk swap");
        return true;
      },
    );
    assert.deepEqual(snapshotDirs('web01').length, 2);
    const r = await BackupReader.open(spec('web01', 1_700_000_100), pool);
    assert.equal(sha(await collect(r.chunks('disk.img.fidx'))), sha(image));
    await r.close();
    await setMaintenanceMode(srv.instance.access, 'store1', { type: 'offline', message: 'moving' });
    await assert.rejects(
      BackupReader.open(spec('web01', 1_700_000_100), pool),
      /offline maintenance mode: moving/,
    );
  } finally {
    await setMaintenanceMode(srv.instance.access, 'store1', undefined);
  }
});

test('a backup admitted before read-only is set runs to completion', async () => {
  const w = await BackupWriter.start(spec('web01', 1_700_000_300), pool);
  await setMaintenanceMode(srv.instance.access, 'store1', { type: 'read-only', message: 'later' });
  try {
    await guarded(w, async () => {
      await w.uploadStream('root.tar.didx', pieces(randomBytes(300_000)), { chunkSize: CHUNK });
      await w.finish();
    });
    assert.ok(existsSync(join(storePath, 'host/web01/2023-11-14T22:18:20Z/index.json.blob')));
  } finally {
    await setMaintenanceMode(srv.instance.access, 'store1', undefined);
  }
});

test('a reader cannot fetch a chunk that no downloaded index references', async () => {
  const s = await openProtocolSession({
    target: { host: srv.host, port: srv.port },
    policy: { fingerprint: srv.fingerprint },
    credentials: srv.root,
    path: '/api2/json/reader',
    protocol: 'proxmox-backup-reader-protocol-v1',
    query: { store: 'store1', 'backup-type': 'host', 'backup-id': 'web01', 'backup-time': 1_700_000_000 },
  });
  const some = readdirSync(join(storePath, '.chunks')).find(
    (d) => readdirSync(join(storePath, '.chunks', d)).length > 0,
  )!;
  const digest = readdirSync(join(storePath, '.chunks', some))[0]!;
  await assert.rejects(s.request('GET', 'chunk', { digest }), (err: Error & { code?: string }) => {
    assert.equal(err.code, 'UNAUTHORIZED');
    assert.match(err.message, /not allowed/);
    return true;
  });
  await s.close();
});

test('a wrong protocol name or an unknown store is refused before the upgrade', async () => {
  const base = {
    target: { host: srv.host, port: srv.port },
    policy: { fingerprint: srv.fingerprint },
    credentials: srv.root,
    path: '/api2/json/backup',
  };
  const query = { store: 'store1', 'backup-type': 'host', 'backup-id': 'x', 'backup-time': 1_700_000_000 };
  await assert.rejects(openProtocolSession({ ...base, protocol: 'nope', query }), /invalid protocol name/);
  await assert.rejects(
    openProtocolSession({
      ...base,
      protocol: 'proxmox-backup-protocol-v1',
      query: { ...query, store: 'nostore' },
    }),
    (err: Error & { code?: string }) => err.code === 'NOT_FOUND',
  );
  await assert.rejects(
    openProtocolSession({ ...base, credentials: undefined, protocol: 'proxmox-backup-protocol-v1', query }),
    (err: Error & { code?: string }) => err.code === 'UNAUTHORIZED',
  );
  assert.equal(srv.instance.access.registry.list('store1').length, 0);
});
