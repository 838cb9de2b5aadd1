/**
 * A disk that PBS 4 wrote, brought to Stowage (issue 18's "a datastore created by the test in PBS
 * 4's on-disk and config form on such a device is mounted and served"). On an ext4 loop device the
 * test lays out a datastore byte by byte as PBS 4 does — `.lock`, `.chunks` with its 65 536
 * directories, a group `owner`, a snapshot with `index.json.blob`, a fixed (`disk.img.fidx`) and
 * a dynamic index (`root.pxar.didx`, a pxar archive built from the format's documentation) and
 * their chunks as PBS blobs — from the format definitions (pbs-datastore `file_formats.rs`,
 * `fixed_index.rs`, `dynamic_index.rs`), not with Stowage's writers. The `datastore.cfg` entry is
 * appended as PBS 4 writes it (`backing-device`, a path relative to the device). The server (its own
 * process) mounts it through the API, lists and verifies the snapshot, and `stowage-client`
 * restores both archives byte for byte.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import {
  appendFileSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  readlinkSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { crc32 } from 'node:zlib';
import type { ApiClient } from '../../src/client/connection.js';
import { buildFixture } from '../pxar/pbs-fixtures.js';
import {
  cleanupUnder,
  makeLoopDisk,
  mountDisk,
  mountsUnder,
  unmount,
  type LoopDisk,
} from '../helpers/loop-device.js';
import { loginApi, runClient, startE2eServer, taskEnd, type E2eServer } from './backup-helpers.js';

// pbs-datastore/src/file_formats.rs
const UNCOMPRESSED_BLOB_MAGIC_1_0 = Buffer.from([66, 171, 56, 7, 190, 131, 112, 161]);
const FIXED_SIZED_CHUNK_INDEX_1_0 = Buffer.from([47, 127, 65, 237, 145, 253, 15, 205]);
const DYNAMIC_SIZED_CHUNK_INDEX_1_0 = Buffer.from([28, 145, 78, 165, 25, 186, 179, 205]);
const BACKUP_TIME = 1_717_236_000; // 2024-06-01T10:00:00Z
const SNAPSHOT = 'host/web01/2024-06-01T10:00:00Z';
/** PBS's fixed chunk size is 4 MiB; a smaller one keeps the disk image small (any power of two is valid). */
const CHUNK_SIZE = 64 << 10;

const sha256 = (b: Buffer) => createHash('sha256').update(b).digest();
const u64 = (n: number) => {
  const b = Buffer.alloc(8);
  b.writeBigUInt64LE(BigInt(n));
  return b;
};

/** DataBlob without compression or encryption: MAGIC || CRC32(data) (little-endian) || data. */
function uncompressedBlob(data: Buffer): Buffer {
  const crc = Buffer.alloc(4);
  crc.writeUInt32LE(crc32(data));
  return Buffer.concat([UNCOMPRESSED_BLOB_MAGIC_1_0, crc, data]);
}

/** The 4096-byte index header both index kinds start with: magic, uuid, ctime, index_csum. */
function indexHeader(magic: Buffer, csum: Buffer, rest: Buffer): Buffer {
  const head = Buffer.concat([magic, randomBytes(16), u64(BACKUP_TIME), csum, rest]);
  return Buffer.concat([head, Buffer.alloc(4096 - head.length)]);
}

/** Write `data`'s chunks (as blobs under `.chunks/<first 4 hex>/<digest>`); their digests. */
function storeChunks(store: string, chunks: Buffer[]): Buffer[] {
  return chunks.map((chunk) => {
    const digest = sha256(chunk);
    const hex = digest.toString('hex');
    writeFileSync(join(store, '.chunks', hex.slice(0, 4), hex), uncompressedBlob(chunk));
    return digest;
  });
}

/** `fixed_index.rs`: header with size and chunk_size, then the digests; csum = SHA256(digest1||digest2||...). */
function fixedIndex(store: string, image: Buffer): { file: Buffer; csum: Buffer } {
  const chunks: Buffer[] = [];
  for (let at = 0; at < image.length; at += CHUNK_SIZE) chunks.push(image.subarray(at, at + CHUNK_SIZE));
  const digests = storeChunks(store, chunks);
  const csum = sha256(Buffer.concat(digests));
  const header = indexHeader(
    FIXED_SIZED_CHUNK_INDEX_1_0,
    csum,
    Buffer.concat([u64(image.length), u64(CHUNK_SIZE)]),
  );
  return { file: Buffer.concat([header, ...digests]), csum };
}

/** `dynamic_index.rs`: header, then (end offset u64 LE, digest) per chunk; csum over the same bytes. */
function dynamicIndex(store: string, data: Buffer, cuts: number[]): { file: Buffer; csum: Buffer } {
  const bounds = [0, ...cuts, data.length];
  const chunks = bounds.slice(1).map((end, i) => data.subarray(bounds[i], end));
  const digests = storeChunks(store, chunks);
  const entries = Buffer.concat(digests.map((d, i) => Buffer.concat([u64(bounds[i + 1]!), d])));
  return {
    file: Buffer.concat([
      indexHeader(DYNAMIC_SIZED_CHUNK_INDEX_1_0, sha256(entries), Buffer.alloc(0)),
      entries,
    ]),
    csum: sha256(entries),
  };
}

/** The datastore PBS 4 leaves at `store` after one backup of an image and a pxar archive. */
function layOutPbsDatastore(store: string, image: Buffer, pxar: Buffer): void {
  // ChunkStore::create: the base, `.chunks` with 0000..ffff, then `.lock`
  mkdirSync(join(store, '.chunks'), { recursive: true });
  for (let i = 0; i < 0x10000; i++) mkdirSync(join(store, '.chunks', i.toString(16).padStart(4, '0')));
  writeFileSync(join(store, '.lock'), '');
  const group = join(store, 'host', 'web01');
  const snap = join(group, '2024-06-01T10:00:00Z');
  mkdirSync(snap, { recursive: true });
  writeFileSync(join(group, 'owner'), 'root@pam\n');
  const fidx = fixedIndex(store, image);
  writeFileSync(join(snap, 'disk.img.fidx'), fidx.file);
  const didx = dynamicIndex(store, pxar, [Math.floor(pxar.length / 2)]);
  writeFileSync(join(snap, 'root.pxar.didx'), didx.file);
  // BackupManifest, serialized with serde_json::to_string_pretty and stored as a blob
  const manifest = {
    'backup-type': 'host',
    'backup-id': 'web01',
    'backup-time': BACKUP_TIME,
    files: [
      {
        filename: 'disk.img.fidx',
        'crypt-mode': 'none',
        size: image.length,
        csum: fidx.csum.toString('hex'),
      },
      {
        filename: 'root.pxar.didx',
        'crypt-mode': 'none',
        size: pxar.length,
        csum: didx.csum.toString('hex'),
      },
    ],
    signature: null,
    unprotected: {
      chunk_upload_stats: { count: 5, size: image.length + pxar.length, compressed_size: 0, duplicates: 0 },
    },
  };
  writeFileSync(
    join(snap, 'index.json.blob'),
    uncompressedBlob(Buffer.from(JSON.stringify(manifest, null, 2))),
  );
}

let root: string;
let srv: E2eServer;
let api: ApiClient;
let disk: LoopDisk;
let mountDir: string;
let env: NodeJS.ProcessEnv;
/** Two full chunks and a short last one. */
const image = randomBytes(2 * CHUNK_SIZE + 1234);
const pxar = buildFixture();

before(async () => {
  root = mkdtempSync(join(tmpdir(), 'stowage-e2e-pbs4-disk-'));
  mountDir = join(root, 'mnt');
  disk = makeLoopDisk(root, 'pbsdisk');
  const prep = join(root, 'prep');
  mkdirSync(prep);
  mountDisk(disk, prep);
  try {
    layOutPbsDatastore(join(prep, 'pbs', 'store1'), image, pxar);
  } finally {
    unmount(prep);
  }
  srv = await startE2eServer('unused', { root, env: { STOWAGE_DATASTORE_MOUNT_DIR: mountDir } });
  api = await loginApi(srv);
  env = { ...srv.env, STOWAGE_REPOSITORY: `root@pam@${srv.host}:${srv.port}:pbsdisk` };
  // as PBS 4 writes it: keys sorted, a tab before each, `backing-device` and a relative path
  appendFileSync(
    join(root, 'etc', 'datastore.cfg'),
    `\ndatastore: pbsdisk\n\tbacking-device ${disk.uuid}\n\tcomment Written by PBS 4\n` +
      '\tgc-on-unmount true\n\tnotification-mode notification-system\n\tpath pbs/store1\n',
  );
});

after(async () => {
  try {
    await srv?.kill();
  } finally {
    if (root) cleanupUnder(root);
    await srv?.stop();
  }
});

test("PBS 4's entry is listed as a removable datastore that is not mounted", async () => {
  const list = await api.call<Array<Record<string, unknown>>>('GET', '/admin/datastore');
  const item = list.find((i) => i.store === 'pbsdisk');
  assert.deepEqual(
    [item?.['mount-status'], item?.comment, item?.['backend-type']],
    ['notmounted', 'Written by PBS 4', 'filesystem'],
  );
});

test('mounted through the API, its snapshot is listed with both archives and verifies', async () => {
  const mounted = await taskEnd(api, await api.call<string>('POST', '/admin/datastore/pbsdisk/mount'));
  assert.equal(mounted.status, 'OK', mounted.log.join('\n'));
  assert.deepEqual(mountsUnder(root), [join(mountDir, 'pbsdisk')]);
  const snapshots = await api.call<Array<Record<string, unknown>>>(
    'GET',
    '/admin/datastore/pbsdisk/snapshots',
  );
  assert.equal(snapshots.length, 1);
  const [s] = snapshots;
  assert.deepEqual(
    [s!['backup-type'], s!['backup-id'], s!['backup-time'], s!.owner],
    ['host', 'web01', BACKUP_TIME, 'root@pam'],
  );
  const files = (s!.files as Array<{ filename: string }>).map((f) => f.filename).sort();
  assert.deepEqual(files, ['disk.img.fidx', 'index.json.blob', 'root.pxar.didx']);
  const verified = await taskEnd(api, await api.call<string>('POST', '/admin/datastore/pbsdisk/verify'));
  assert.equal(verified.status, 'OK', verified.log.join('\n'));
});

test('stowage-client restores the image byte for byte and the pxar archive with its files', async () => {
  const img = join(root, 'disk.img');
  const r1 = await runClient(['restore', SNAPSHOT, 'disk.img', img], env);
  assert.equal(r1.code, 0, r1.stderr);
  assert.ok(readFileSync(img).equals(image), 'the image differs');
  const dir = join(root, 'restored');
  const r2 = await runClient(['restore', SNAPSHOT, 'root.pxar', dir], env);
  assert.equal(r2.code, 0, r2.stderr);
  assert.equal(readFileSync(join(dir, 'a.txt'), 'utf8'), 'hello from pbs\n');
  assert.equal(statSync(join(dir, 'dir', 'f')).size, 0);
  assert.equal(statSync(join(dir, 'hl')).ino, statSync(join(dir, 'a.txt')).ino);
  assert.equal(readlinkSync(join(dir, 'sym')), 'a.txt');
});
