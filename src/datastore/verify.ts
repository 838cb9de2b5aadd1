/**
 * Snapshot verification, as PBS's `src/backup/verify.rs`: re-read every chunk each index of a
 * snapshot references (CRC; for unencrypted chunks also size and digest of the plaintext), check
 * every index and blob against the manifest (size and csum), and record the outcome.
 *
 * Two modes, because PBS's verify is classified Read but writes (reference §2 notes,
 * maintenance.md §2):
 * - `write` does what PBS does: renames corrupt chunks to `<digest>.<n>.bad` (so GC keeps them
 *   apart and a later good upload can replace them) and stores `verify_state` in the manifest.
 *   It needs a `write` admission.
 * - `read` checks exactly the same things and changes nothing on the datastore, so a read-only
 *   (maintenance) datastore can be verified under a `read` admission. Snapshot locks live under
 *   the run dir, not in the datastore, so taking them writes nothing there.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { setImmediate as yieldToLoop } from 'node:timers/promises';
import { isStowageError } from '../errors.js';
import { manifestUpload, snapshotPath, type BackupDir, type BackupStore } from './backup-info.js';
import { checkChunkBlob, type ChunkBackend } from './chunk-backend.js';
import { decodeBlob, isEncryptedKind, verifyBlobCrc } from './data-blob.js';
import { digestToHex, sha256 } from './digest.js';
import { isIndexFileName } from './index-file.js';
import { openIndexReader } from './open-index.js';
import { loadManifest, updateManifest, type BackupManifest, type ManifestFile } from './manifest.js';

/** Digests already checked in one verify run, shared by all snapshots of that run. */
export interface VerifyCache {
  readonly verified: Set<string>;
  readonly corrupt: Set<string>;
}

export function createVerifyCache(): VerifyCache {
  return { verified: new Set(), corrupt: new Set() };
}

export type VerifyMode =
  /** Check only; nothing on the datastore changes. */
  | { mode: 'read'; upid?: string }
  /** Check, rename corrupt chunks and record verify_state under `upid` in the manifest. */
  | { mode: 'write'; upid: string };

export type VerifyOptions = VerifyMode & {
  cache?: VerifyCache;
  log?: (line: string) => void;
  signal?: AbortSignal;
  /** fsync the updated manifest (sync-level `file`). */
  fsync?: boolean;
};

export interface SnapshotVerifyResult {
  /** True when every check passed (or the snapshot was skipped, as PBS counts it). */
  ok: boolean;
  errors: string[];
  /** Why the snapshot was not verified: in use by a backup or delete, or gone. */
  skipped?: string;
  /** Where corrupt chunks were quarantined (write mode only; paths on the filesystem backend). */
  renamed: string[];
}

export interface VerifyStore extends BackupStore {
  readonly chunks: ChunkBackend;
}

function message(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

const YIELD_EVERY = 64;

interface FileContext {
  store: VerifyStore;
  opts: VerifyOptions;
  cache: VerifyCache;
  errors: string[];
  renamed: string[];
  log: (line: string) => void;
}

async function verifyIndexFile(ctx: FileContext, path: string, info: ManifestFile): Promise<void> {
  const { store, cache, errors, log } = ctx;
  let index;
  try {
    index = openIndexReader(path);
  } catch (err) {
    errors.push(`${info.filename}: ${message(err)}`);
    return;
  }
  if (index.totalSize !== info.size) {
    errors.push(`${info.filename}: wrong size (${index.totalSize} != ${info.size})`);
    return;
  }
  if (index.computeCsum().toString('hex') !== info.csum) {
    errors.push(`${info.filename}: wrong index checksum`);
    return;
  }
  const wantEncrypted = info['crypt-mode'] === 'encrypt';
  for (let i = 0; i < index.count; i++) {
    // every chunk: an abort (a maintenance deadline) lands within one chunk load, not 64
    ctx.opts.signal?.throwIfAborted();
    if (i % YIELD_EVERY === YIELD_EVERY - 1) await yieldToLoop();
    const digest = index.digest(i);
    const hex = digestToHex(digest);
    if (cache.verified.has(hex)) continue;
    if (cache.corrupt.has(hex)) {
      errors.push(`${info.filename}: chunk ${hex} was marked as corrupt`);
      continue;
    }
    const { start, end } = index.chunkRange(i);
    try {
      // the stored copy, past any cache: an S3 datastore's chunk is checked in the bucket (PBS 4)
      const bytes = await store.chunks.load(digest, undefined, { stored: true });
      const kind = checkChunkBlob(digest, bytes, { expectedSize: end - start });
      if (isEncryptedKind(kind) !== wantEncrypted) {
        // PBS counts this as an error without treating the chunk as corrupt.
        errors.push(
          `${info.filename}: chunk ${hex} is ${isEncryptedKind(kind) ? 'encrypted' : 'not encrypted'} but the index crypt-mode is ${info['crypt-mode']}`,
        );
      }
      cache.verified.add(hex);
    } catch (err) {
      if (!isStowageError(err)) throw err;
      cache.corrupt.add(hex);
      errors.push(`${info.filename}: ${message(err)}`);
      log(`can't verify chunk ${hex} - ${message(err)}`);
      if (ctx.opts.mode === 'write') {
        const renamed = await store.chunks.quarantine(digest);
        if (renamed) {
          ctx.renamed.push(renamed);
          log(`corrupted chunk renamed to "${renamed}"`);
        }
      }
    }
  }
}

function verifyBlobFile(ctx: FileContext, path: string, info: ManifestFile): void {
  let raw: Buffer;
  try {
    raw = readFileSync(path);
  } catch (err) {
    ctx.errors.push(`${info.filename}: ${message(err)}`);
    return;
  }
  if (raw.length !== info.size) {
    ctx.errors.push(`${info.filename}: wrong size (${raw.length} != ${info.size})`);
    return;
  }
  // PBS reports a blob csum mismatch with the same words as an index one.
  if (sha256(raw).toString('hex') !== info.csum) {
    ctx.errors.push(`${info.filename}: wrong index checksum`);
    return;
  }
  try {
    if (info['crypt-mode'] === 'encrypt') verifyBlobCrc(raw, info.filename);
    else decodeBlob(raw, info.filename);
  } catch (err) {
    if (!isStowageError(err)) throw err;
    ctx.errors.push(message(err));
  }
}

/**
 * Verify one snapshot. Takes the snapshot lock shared and skips the snapshot when a backup or a
 * delete holds it (as PBS). In `write` mode stores `verify_state` in the manifest and renames
 * corrupt chunks; in `read` mode only reports. Pass one `cache` to several calls so that chunks
 * shared by snapshots are read once per run.
 */
export async function verifySnapshot(
  store: VerifyStore,
  dir: BackupDir,
  opts: VerifyOptions,
): Promise<SnapshotVerifyResult> {
  const log = opts.log ?? (() => {});
  const cache = opts.cache ?? createVerifyCache();
  const path = snapshotPath(store, dir);
  const lock = await store.locks.tryLockSnapshot(dir, 'verify', { shared: true }).catch(message);
  if (typeof lock === 'string') {
    log(`SKIPPED: verify ${dir} - could not acquire snapshot lock: ${lock}`);
    return { ok: true, errors: [], skipped: lock, renamed: [] };
  }
  try {
    let manifest: BackupManifest;
    try {
      manifest = loadManifest(path);
    } catch (err) {
      if (!isStowageError(err)) throw err;
      if (err.code === 'NOT_FOUND') {
        log(`SKIPPED: verify ${dir} - snapshot vanished or is unfinished`);
        return { ok: true, errors: [], skipped: 'snapshot vanished or is unfinished', renamed: [] };
      }
      log(`verify ${dir} - manifest load error: ${err.message}`);
      return { ok: false, errors: [`manifest load error: ${err.message}`], renamed: [] };
    }

    log(`verify ${dir}`);
    const ctx: FileContext = { store, opts, cache, errors: [], renamed: [], log };
    for (const info of manifest.files) {
      opts.signal?.throwIfAborted();
      log(`  check ${info.filename}`);
      const filePath = join(path, info.filename);
      const before = ctx.errors.length;
      if (isIndexFileName(info.filename)) await verifyIndexFile(ctx, filePath, info);
      else if (info.filename.endsWith('.blob')) verifyBlobFile(ctx, filePath, info);
      else ctx.errors.push(`${info.filename}: unknown archive type`);
      if (ctx.errors.length > before) log(`verify ${dir}/${info.filename} failed`);
    }

    const state = ctx.errors.length === 0 ? 'ok' : 'failed';
    if (opts.mode === 'write') {
      await updateManifest(
        path,
        (m) => {
          m.unprotected.verify_state = { upid: opts.upid, state };
        },
        {
          lock: (timeoutMs) => store.locks.lockManifest(dir, { timeoutMs }),
          fsync: opts.fsync,
          upload: manifestUpload(store, dir),
        },
      );
    }
    return { ok: state === 'ok', errors: ctx.errors, renamed: ctx.renamed };
  } finally {
    lock.release();
  }
}
