/**
 * Single files of a snapshot for the download and upload-backup-log endpoints (PBS
 * `download_file`, `download_file_decoded`, `upload_backup_log` in `src/api2/admin/datastore.rs`):
 * a raw file as stored, a file decoded (a blob's payload; an index's archive read back from its
 * chunks), and a new blob added to a finished snapshot.
 *
 * Names are `ArchiveName`s (validated safe-ids, `src/api-types/archive-name.ts`), so a joined path
 * stays inside the snapshot directory. Large archives are streamed chunk by chunk, never loaded
 * whole; a blob (at most 128 MiB, reference §7.2) is read whole, as PBS does.
 */
import { closeSync, createReadStream, fstatSync, openSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import type { ArchiveName } from '../api-types/archive-name.js';
import {
  BadRequestError,
  CorruptDataError,
  ERR_NOT_A_BLOB_NAME,
  NotFoundError,
  StowageError,
} from '../errors.js';
import { createFileExclusive } from '../sys/atomic-file.js';
import { snapshotExists, snapshotPath, type BackupDir, type BackupStore } from './backup-info.js';
import type { ChunkBackend } from './chunk-backend.js';
import { blobKind, decodeBlob, isEncryptedKind, verifyBlobCrc } from './data-blob.js';
import { digestToHex, sha256 } from './digest.js';
import type { ChunkIndexReader } from './index-file.js';
import { DynamicIndexReader } from './dynamic-index.js';
import { FixedIndexReader } from './fixed-index.js';
import { IndexReadAt, type ArchiveReadAt } from './index-read-at.js';
import { loadManifest, type BackupManifest } from './manifest.js';

/** An open file's content, to be streamed to a client. */
export interface FileContent {
  /** Bytes the stream yields. */
  size: number;
  stream: Readable;
}

function existingSnapshot(store: BackupStore, dir: BackupDir): string {
  if (!snapshotExists(store, dir)) throw new NotFoundError(`snapshot '${dir}' does not exist`);
  return snapshotPath(store, dir);
}

function fileNotFound(dir: BackupDir, name: string): NotFoundError {
  return new NotFoundError(`file '${name}' does not exist in snapshot '${dir}'`);
}

function readSnapshotFileBytes(store: BackupStore, dir: BackupDir, name: string): Buffer {
  try {
    return readFileSync(join(existingSnapshot(store, dir), name));
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') throw fileNotFound(dir, name);
    throw err;
  }
}

/**
 * A snapshot file as stored. The file is opened here, so a missing one fails before anything is
 * sent; the stream closes its descriptor when it ends or is destroyed.
 */
export function openSnapshotFile(store: BackupStore, dir: BackupDir, file: ArchiveName): FileContent {
  let fd: number;
  try {
    fd = openSync(join(existingSnapshot(store, dir), file.name), 'r');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') throw fileNotFound(dir, file.name);
    throw err;
  }
  try {
    const st = fstatSync(fd);
    if (!st.isFile()) throw fileNotFound(dir, file.name);
    return { size: st.size, stream: createReadStream('', { fd, autoClose: true }) };
  } catch (err) {
    closeSync(fd);
    throw err;
  }
}

function loadSnapshotManifest(store: BackupStore, dir: BackupDir): BackupManifest {
  const path = existingSnapshot(store, dir);
  try {
    return loadManifest(path);
  } catch (err) {
    if (err instanceof NotFoundError) throw new NotFoundError(`manifest not found for snapshot '${dir}'`);
    throw err;
  }
}

function encryptedError(name: string): BadRequestError {
  return new BadRequestError(`cannot decode '${name}' - is encrypted`);
}

/**
 * One chunk's plaintext, checked against its digest and the size the index gives it. An
 * encrypted chunk in an archive the manifest calls unencrypted is damage, not a request error.
 */
export async function readDecodedChunk(
  chunks: ChunkBackend,
  digest: Buffer,
  expectedSize: number,
): Promise<Buffer> {
  const hex = digestToHex(digest);
  const bytes = await chunks.load(digest);
  const kind = blobKind(bytes);
  if (kind !== undefined && isEncryptedKind(kind)) {
    throw new CorruptDataError(`chunk ${hex}: encrypted, but the archive is not`);
  }
  const plain = decodeBlob(bytes, `chunk ${hex}`);
  if (plain.length !== expectedSize) {
    throw new CorruptDataError(
      `chunk ${hex}: wrong size (${plain.length} bytes, index expects ${expectedSize})`,
    );
  }
  if (!sha256(plain).equals(digest)) throw new CorruptDataError(`chunk ${hex}: wrong digest`);
  return plain;
}

/** The archive an index describes, chunk after chunk, read only as fast as the consumer takes it. */
function decodedIndexStream(backend: ChunkBackend, index: ChunkIndexReader): Readable {
  async function* chunks(): AsyncGenerator<Buffer> {
    for (let i = 0; i < index.count; i++) {
      const { start, end } = index.chunkRange(i);
      yield await readDecodedChunk(backend, index.digest(i), end - start);
    }
  }
  return Readable.from(chunks(), { objectMode: false });
}

/**
 * A snapshot file decoded, as PBS's `download_file_decoded`: needs the manifest; refuses a file
 * the manifest marks encrypted; an index must match the size and checksum the manifest records
 * for it and is streamed as the archive it describes; a blob is its payload (CRC checked).
 */
export function openDecodedSnapshotFile(
  store: BackupStore & { readonly chunks: ChunkBackend },
  dir: BackupDir,
  file: ArchiveName,
): FileContent {
  if (file.type === 'blob') {
    const manifest = loadSnapshotManifest(store, dir);
    const entry = manifest.files.find((f) => f.filename === file.name);
    if (entry?.['crypt-mode'] === 'encrypt') throw encryptedError(file.name);
    const what = `'${file.name}' of snapshot '${dir}'`;
    const bytes = readSnapshotFileBytes(store, dir, file.name);
    const kind = verifyBlobCrc(bytes, what);
    if (isEncryptedKind(kind)) throw encryptedError(file.name);
    const data = decodeBlob(bytes, what);
    return { size: data.length, stream: Readable.from([data], { objectMode: false }) };
  }
  const index = openCheckedIndex(store, dir, file);
  return { size: index.totalSize, stream: decodedIndexStream(store.chunks, index) };
}

/**
 * An index of a finished snapshot, as PBS reads one to decode it: the manifest must list it
 * unencrypted, and its size and checksum must be the ones the manifest records.
 */
function openCheckedIndex(store: BackupStore, dir: BackupDir, file: ArchiveName): ChunkIndexReader {
  const manifest = loadSnapshotManifest(store, dir);
  const entry = manifest.files.find((f) => f.filename === file.name);
  if (entry?.['crypt-mode'] === 'encrypt') throw encryptedError(file.name);
  const bytes = readSnapshotFileBytes(store, dir, file.name);
  const what = `'${file.name}' of snapshot '${dir}'`;
  if (!entry) throw new BadRequestError(`manifest does not contain file '${file.name}'`);
  const index =
    file.type === 'fixed'
      ? FixedIndexReader.fromBuffer(bytes, { what })
      : DynamicIndexReader.fromBuffer(bytes, { what });
  if (index.totalSize !== entry.size) {
    throw new CorruptDataError(`wrong size for file '${file.name}' (${entry.size} != ${index.totalSize})`);
  }
  if (index.computeCsum().toString('hex') !== entry.csum) {
    throw new CorruptDataError(`wrong checksum for file '${file.name}'`);
  }
  return index;
}

/**
 * Random access to the archive an index of a finished snapshot describes (pxar lookups, catalog
 * listings: PBS `get_local_pxar_reader`), with the checks of `openDecodedSnapshotFile`.
 */
export function openSnapshotArchive(
  store: BackupStore & { readonly chunks: ChunkBackend },
  dir: BackupDir,
  file: ArchiveName,
): ArchiveReadAt {
  if (file.type === 'blob') throw new BadRequestError(`'${file.name}' is a blob, not an archive`);
  const index = openCheckedIndex(store, dir, file);
  return new IndexReadAt(index, (i) => {
    const { start, end } = index.chunkRange(i);
    return readDecodedChunk(store.chunks, index.digest(i), end - start);
  });
}

/**
 * Add a blob to an existing snapshot (PBS `upload_backup_log` → `add_blob`): its magic and CRC
 * are checked first (a client's bad upload is a 400), it never replaces a file (ALREADY_EXISTS),
 * and it appears whole or not at all (temp file, fsync under sync-level `file`, link into place).
 * Holds the snapshot lock shared without waiting, so a running backup or a delete refuses it.
 */
export async function addSnapshotBlob(
  store: BackupStore,
  dir: BackupDir,
  file: ArchiveName,
  bytes: Buffer,
  opts: { fsync?: boolean; existsMessage?: string } = {},
): Promise<void> {
  if (file.type !== 'blob') throw ERR_NOT_A_BLOB_NAME(file.name);
  try {
    verifyBlobCrc(bytes, 'uploaded blob');
  } catch (err) {
    if (err instanceof CorruptDataError) throw new BadRequestError(err.message);
    throw err;
  }
  const path = existingSnapshot(store, dir);
  const lock = await store.locks.tryLockSnapshot(dir, 'backup is running or snapshot is in use', {
    shared: true,
  });
  try {
    createFileExclusive(join(path, file.name), bytes, { fsync: opts.fsync, mode: 0o644 });
    if (store.mirror) {
      try {
        await store.mirror.put(`${dir.relativePath}/${file.name}`, bytes);
      } catch (err) {
        // not in the bucket, so not here either: the client may send it again
        rmSync(join(path, file.name), { force: true });
        throw err;
      }
    }
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') {
      throw new StowageError(
        'ALREADY_EXISTS',
        opts.existsMessage ?? `file '${file.name}' already exists in snapshot '${dir}'`,
      );
    }
    throw err;
  } finally {
    lock.release();
  }
}
