/**
 * Garbage collection, as PBS's `DataStore::garbage_collection` (reference §7.6): phase 1 marks
 * every chunk referenced by any index by setting its atime to now; phase 2 removes chunk files
 * whose atime is older than the cutoff. The cutoff is 24 h 5 min before phase 1 started (so
 * `relatime` mounts, which may skip atime updates younger than a day, cannot lose chunks), and
 * earlier still if a writer older than that is active: a writer's new chunks are not referenced
 * by any index until it finishes, and only their atime (set on insert) protects them.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { setImmediate as yieldToLoop } from 'node:timers/promises';
import { CorruptDataError } from '../errors.js';
import { replaceFile } from '../sys/atomic-file.js';
import type { ChunkBackend } from './chunk-backend.js';
import type { DatastoreLocks } from './datastore-locks.js';
import { digestToHex } from './digest.js';
import { isIndexFileName, type ChunkIndexReader } from './index-file.js';
import { openIndexReader } from './open-index.js';
import { earliest, type WriterRegistry } from './writer-registry.js';

/** PBS `GarbageCollectionStatus`, as the API sends it (declared with the other wire types). */
export type { GarbageCollectionStatus } from '../api-types/datastore-replies.js';
import type { GarbageCollectionStatus } from '../api-types/datastore-replies.js';

export interface GarbageCollectionOptions {
  /** Start (ms since epoch) of the oldest writer known to the caller, e.g. from the registry. */
  oldestWriterStartMs?: number;
  /** Phase 1 start time in ms; defaults to Date.now(). */
  now?: number;
  upid?: string;
  log?: (line: string) => void;
  signal?: AbortSignal;
}

/** 24 h: chunks touched less than a day ago may not show it on `relatime` mounts (§7.6). */
const ATIME_SAFETY_MS = 86_400_000;
/** PBS's extra 5 minutes of slack. */
const ATIME_GAP_MS = 300_000;
/** Bound on the "already touched in this run" set, so a huge datastore cannot exhaust memory. */
const TOUCHED_CACHE_MAX = 1 << 18;

export function emptyGcStatus(): GarbageCollectionStatus {
  return {
    'index-file-count': 0,
    'index-data-bytes': 0,
    'disk-bytes': 0,
    'disk-chunks': 0,
    'removed-bytes': 0,
    'removed-chunks': 0,
    'pending-bytes': 0,
    'pending-chunks': 0,
    'removed-bad': 0,
    'still-bad': 0,
  };
}

function errno(err: unknown): string | undefined {
  return (err as NodeJS.ErrnoException | undefined)?.code;
}

/**
 * Every `*.fidx`/`*.didx` under the datastore. Dot entries (`.chunks`, `.lock`, temp files)
 * are skipped; vanished directories (a concurrent prune) are fine; a permission error aborts,
 * except on `lost+found` at the top, which a mount point carries (PBS does the same).
 */
export function listIndexFiles(basePath: string): string[] {
  const out: string[] = [];
  const walk = (dir: string, depth: number): void => {
    let entries;
    try {
      entries = readdirSync(dir, { withFileTypes: true });
    } catch (err) {
      const code = errno(err);
      if (code === 'ENOENT') return;
      if ((code === 'EACCES' || code === 'EPERM') && depth <= 1 && dir.endsWith('/lost+found')) return;
      throw err;
    }
    for (const e of entries) {
      if (e.name.startsWith('.')) continue;
      const p = join(dir, e.name);
      if (e.isDirectory()) walk(p, depth + 1);
      else if (e.isFile() && isIndexFileName(e.name)) out.push(p);
    }
  };
  walk(basePath, 0);
  return out;
}

function humanBytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];
  let v = n;
  let u = 0;
  while (v >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  return u === 0 ? `${n} B` : `${v.toFixed(2)} ${units[u]}`;
}

/** What GC works on: the index tree under `basePath`, its chunks, its writers and its GC lock. */
export interface GcStore {
  readonly basePath: string;
  readonly chunks: ChunkBackend;
  /** The datastore's locks; GC takes the `gc` one (the local lock service's is `<base>/.lock`). */
  readonly locks: Pick<DatastoreLocks, 'tryLockGc'>;
  /** This process's writers (the datastore's registry); others come via the options. */
  readonly writers?: WriterRegistry;
  /**
   * Remove unfinished snapshots no live session owns (backup-info.ts), before phase 1: what a
   * killed server left is garbage, and its chunks become collectable once nothing protects them.
   */
  removeAbandonedSnapshots?(log: (line: string) => void): Promise<unknown>;
}

/**
 * Run GC on a datastore. Refuses with CONFLICT when another GC holds the datastore's GC lock
 * (another process or this one; LockService name `gc`). Writes the result to `<base>/.gc-status`
 * atomically and returns it. `signal` aborts between chunks (an index may hold a million of them,
 * and an operator ending GC for a maintenance deadline should not wait for a whole index).
 */
export async function garbageCollection(
  store: GcStore,
  opts: GarbageCollectionOptions = {},
): Promise<GarbageCollectionStatus> {
  const log = opts.log ?? (() => {});
  const lock = await store.locks.tryLockGc();
  try {
    opts.signal?.throwIfAborted();
    const chunks = store.chunks;
    const phase1Start = opts.now ?? Date.now();
    // Read before phase 1: a writer that finishes during phase 1 may index chunks in a part of
    // the tree already walked; only its start time protects those chunks.
    const oldestWriter = earliest(phase1Start, opts.oldestWriterStartMs, store.writers?.oldestStart())!;
    const status = emptyGcStatus();
    if (opts.upid !== undefined) status.upid = opts.upid;

    log('Start GC phase1 (mark used chunks)');
    await store.removeAbandonedSnapshots?.(log);
    const indexes = listIndexFiles(store.basePath);
    const touched = new Set<string>();
    let lastPercent = 0;
    for (const [n, path] of indexes.entries()) {
      opts.signal?.throwIfAborted();
      let index: ChunkIndexReader;
      try {
        index = openIndexReader(path);
      } catch (err) {
        if (errno(err) === 'ENOENT') continue; // removed by a concurrent prune
        throw err;
      }
      status['index-file-count']++;
      status['index-data-bytes'] += index.totalSize;
      for (let i = 0; i < index.count; i++) {
        opts.signal?.throwIfAborted();
        const digest = index.digest(i);
        const hex = digestToHex(digest);
        if (touched.has(hex)) continue;
        if (touched.size >= TOUCHED_CACHE_MAX) touched.clear();
        touched.add(hex);
        // A missing chunk's quarantined copies are marked instead (see ChunkBackend.mark).
        if (!(await chunks.mark(digest))) {
          log(`warning: unable to access non-existent chunk ${hex}, required by "${path}"`);
        }
      }
      const percent = Math.floor(((n + 1) * 100) / indexes.length);
      if (percent !== lastPercent) {
        lastPercent = percent;
        log(`marked ${percent}% (${n + 1} of ${indexes.length} index files)`);
      }
      await yieldToLoop();
    }

    log('Start GC phase2 (sweep unused chunks)');
    let minAtime = phase1Start - ATIME_SAFETY_MS;
    if (oldestWriter < minAtime) minAtime = oldestWriter;
    minAtime -= ATIME_GAP_MS;
    const s = await chunks.sweep(
      { minAtimeMs: minAtime, oldestWriterMs: oldestWriter },
      { signal: opts.signal, log },
    );
    status['removed-bytes'] = s.removedBytes;
    status['removed-chunks'] = s.removedChunks;
    status['removed-bad'] = s.removedBad;
    status['still-bad'] = s.stillBad;
    status['pending-bytes'] = s.pendingBytes;
    status['pending-chunks'] = s.pendingChunks;
    status['disk-bytes'] = s.diskBytes;
    status['disk-chunks'] = s.diskChunks;

    log(`Removed garbage: ${humanBytes(s.removedBytes)}`);
    log(`Removed chunks: ${s.removedChunks}`);
    if (s.removedBad > 0) log(`Removed bad chunks: ${s.removedBad}`);
    if (s.stillBad > 0) log(`Leftover bad chunks: ${s.stillBad}`);
    log(`Pending removals: ${humanBytes(s.pendingBytes)} (in ${s.pendingChunks} chunks)`);
    log(`Original data usage: ${humanBytes(status['index-data-bytes'])}`);
    if (status['index-data-bytes'] > 0) {
      const pct = (s.diskBytes * 100) / status['index-data-bytes'];
      log(`On-Disk usage: ${humanBytes(s.diskBytes)} (${pct.toFixed(2)}%)`);
    }
    log(`On-Disk chunks: ${s.diskChunks}`);
    if (s.diskBytes > 0)
      log(`Deduplication factor: ${(status['index-data-bytes'] / s.diskBytes).toFixed(2)}`);
    if (s.diskChunks > 0) log(`Average chunk size: ${humanBytes(Math.round(s.diskBytes / s.diskChunks))}`);

    replaceFile(join(store.basePath, '.gc-status'), JSON.stringify(status), { fsync: true, mode: 0o644 });
    return status;
  } finally {
    lock.release();
  }
}

/** The last GC result from `<base>/.gc-status`, or undefined when GC never ran. */
export function readGcStatus(basePath: string): GarbageCollectionStatus | undefined {
  const path = join(basePath, '.gc-status');
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    if (errno(err) === 'ENOENT') return undefined;
    throw err;
  }
  try {
    return { ...emptyGcStatus(), ...(JSON.parse(text) as Partial<GarbageCollectionStatus>) };
  } catch {
    throw new CorruptDataError(`'${path}' is not valid JSON`);
  }
}
