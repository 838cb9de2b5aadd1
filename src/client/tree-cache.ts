/**
 * The client's tree cache: for each (server, datastore, group, archive, source directory), the
 * fingerprint of the tree's metadata at its last backup and the checksum of the index that backup
 * produced. When the next backup finds the same fingerprint, the tar stream would be
 * byte-identical (see `TreeFingerprint` in tar-archive.ts), so its chunks and its index are the
 * previous snapshot's: the writer appends them by digest (`BackupWriter.reuseStream`) without
 * reading a single file.
 *
 * Each entry also lists every tar entry of that backup (its metadata key and its length in the
 * stream, in stream order), tied to the index by the entry's checksum and size. When only
 * some files changed, the writer reuses the previous chunks of the unchanged ones by position
 * (tree-reuse.ts): restic's and borg's files cache, at the chunk level because chunks of a tar
 * stream span files.
 *
 * The checksum ties the entry to an index, not to a snapshot: whatever snapshot the server offers
 * as the incremental base, its index is reused only when it is that exact index.
 *
 * Losing the cache costs one full read; a wrong entry cannot produce a wrong backup unless the
 * fingerprint matched, so entries are plain JSON files, one per key, replaced atomically.
 */
import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync, rmSync } from 'node:fs';
import type { PreviousTreeEntries } from './backup-writer.js';
import type { DirectorySpan } from './directory-reuse.js';
import { ENTRY_KEY_HEX, type PlannedEntry } from './tar-archive.js';
import { join } from 'node:path';
import { replaceFile } from '../sys/atomic-file.js';

const CACHE_VERSION = 1;

/** What an entry is for; every field changes the tar stream or the index it maps to. */
export interface TreeCacheKey {
  /** `host:port` of the server. */
  server: string;
  store: string;
  ns: string;
  backupType: string;
  backupId: string;
  /** Archive name, e.g. `root.tar.didx`. */
  archive: string;
  /** Absolute path of the source directory. */
  root: string;
  exclude: readonly string[];
  /** Average chunk size (boundaries depend on it). */
  chunkSize: number;
  /** Sub-second mtimes in pax headers (`TarSourceOptions.subsecondMtimes`). */
  subsecondMtimes?: boolean;
  /** pxar archives and their catalog: the encoder's layout version (backup-command.ts). */
  pxarLayout?: number;
}

export interface TreeCacheEntry {
  /** `TreeFingerprint.digest` of the tree that was archived. */
  fingerprint: string;
  /** Index checksum (as in the manifest) of the archive that tree produced. */
  csum: string;
  /** Archive size in bytes. */
  size: number;
  /**
   * Where each tar entry was in that archive's stream (`encodeEntries`), for reusing unchanged
   * files when others changed. Stored base64 in the same JSON file.
   */
  entries?: Buffer;
  /**
   * pxar trees: where each keyed directory lay in that archive (directory-reuse.ts), in archive
   * order: key (16 bytes), start and length (u64 LE each) per directory.
   */
  dirs?: Buffer;
  /**
   * When the walk that took the fingerprint began (ms since the epoch; pxar trees): an entry
   * whose ctime is later changed since, which the next metadata walk can tell before its end.
   */
  walkedAtMs?: number;
}

interface StoredEntry extends Omit<TreeCacheEntry, 'entries' | 'dirs'> {
  version: number;
  key: TreeCacheKey;
  entries?: string;
  dirs?: string;
}

/** Entry records: per tar entry, in stream order, its key (16 bytes) and its length (u64 LE). */
const KEY_BYTES = ENTRY_KEY_HEX / 2;
const RECORD = KEY_BYTES + 8;

/**
 * The records of a stream's entries in order (a tar plan's entries, a pxar archive's spans); an
 * empty key (racy, or not a file's contents) is stored as zeros.
 */
export function encodeEntries(entries: readonly Pick<PlannedEntry, 'key' | 'length'>[]): Buffer {
  const buf = Buffer.alloc(entries.length * RECORD);
  let off = 0;
  for (const e of entries) {
    if (e.key) buf.write(e.key, off, KEY_BYTES, 'hex');
    buf.writeBigUInt64LE(BigInt(e.length), off + KEY_BYTES);
    off += RECORD;
  }
  return buf;
}

/** Every entry record of a cache entry as a span of the stream, or undefined when they do not add up to its size. */
function entrySpans(entry: TreeCacheEntry): PreviousPxarLayout['spans'] | undefined {
  const buf = entry.entries;
  if (!buf || buf.length % RECORD !== 0) return undefined;
  const spans: PreviousPxarLayout['spans'] = [];
  const zero = '0'.repeat(ENTRY_KEY_HEX);
  let start = 0;
  for (let off = 0; off < buf.length; off += RECORD) {
    const k = buf.toString('hex', off, off + KEY_BYTES);
    const length = Number(buf.readBigUInt64LE(off + KEY_BYTES));
    spans.push({ key: k === zero ? '' : k, start, length });
    start += length;
  }
  return start === entry.size ? spans : undefined;
}

function entryMap(entry: TreeCacheEntry, spans: PreviousPxarLayout['spans']): PreviousTreeEntries {
  const entries = new Map<string, [number, number]>();
  for (const s of spans) if (s.key) entries.set(s.key, [s.start, s.length]);
  return { csum: entry.csum, size: entry.size, entries };
}

/** The entry map of a cache entry, or undefined when it has none or it does not add up to its size. */
export function previousEntries(entry: TreeCacheEntry): PreviousTreeEntries | undefined {
  const spans = entrySpans(entry);
  return spans && entryMap(entry, spans);
}

const DIR_RECORD = KEY_BYTES + 16;

/** The records of an archive's keyed directories (`TreeCacheEntry.dirs`). */
export function encodeDirectories(dirs: readonly DirectorySpan[]): Buffer {
  const buf = Buffer.alloc(dirs.length * DIR_RECORD);
  let off = 0;
  for (const d of [...dirs].sort((a, b) => a.start - b.start)) {
    buf.write(d.key, off, KEY_BYTES, 'hex');
    buf.writeBigUInt64LE(BigInt(d.start), off + KEY_BYTES);
    buf.writeBigUInt64LE(BigInt(d.length), off + KEY_BYTES + 8);
    off += DIR_RECORD;
  }
  return buf;
}

/** A pxar archive's layout for taking whole directories of it (client/pxar-backup.ts). */
export interface PreviousPxarLayout {
  /** Every span in archive order ('' for one without a key) and where each starts. */
  spans: Array<{ key: string; start: number; length: number }>;
  /** Keyed directories by key: [start, length]. */
  dirs: Map<string, [number, number]>;
  /** The same in archive order. */
  dirList: DirectorySpan[];
}

/**
 * A pxar cache entry's records, parsed once: the entry map (as `previousEntries`) and, when the
 * entry lists its directories and they fit, the layout for taking whole directories.
 */
export function previousPxarRecords(
  entry: TreeCacheEntry,
): { previous: PreviousTreeEntries; layout?: PreviousPxarLayout } | undefined {
  const spans = entrySpans(entry);
  if (!spans) return undefined;
  return { previous: entryMap(entry, spans), layout: pxarLayout(entry, spans) };
}

function pxarLayout(
  entry: TreeCacheEntry,
  spans: PreviousPxarLayout['spans'],
): PreviousPxarLayout | undefined {
  const dirBuf = entry.dirs;
  if (!dirBuf || dirBuf.length % DIR_RECORD !== 0) return undefined;
  const dirs = new Map<string, [number, number]>();
  const dirList: DirectorySpan[] = [];
  for (let off = 0; off < dirBuf.length; off += DIR_RECORD) {
    const key = dirBuf.toString('hex', off, off + KEY_BYTES);
    const dStart = Number(dirBuf.readBigUInt64LE(off + KEY_BYTES));
    const length = Number(dirBuf.readBigUInt64LE(off + KEY_BYTES + 8));
    if (dStart + length > entry.size || (dirList.length > 0 && dStart < dirList.at(-1)!.start))
      return undefined;
    dirs.set(key, [dStart, length]);
    dirList.push({ key, start: dStart, length });
  }
  return { spans, dirs, dirList };
}

export class TreeCache {
  constructor(readonly dir: string) {}

  private path(key: TreeCacheKey): string {
    const id = createHash('sha256').update(JSON.stringify(key)).digest('hex');
    return join(this.dir, `${id}.json`);
  }

  /** The entry for `key`, or undefined when there is none or it is unreadable. */
  lookup(key: TreeCacheKey): TreeCacheEntry | undefined {
    let stored: StoredEntry;
    try {
      stored = JSON.parse(readFileSync(this.path(key), 'utf8')) as StoredEntry;
    } catch {
      return undefined;
    }
    if (stored.version !== CACHE_VERSION || JSON.stringify(stored.key) !== JSON.stringify(key))
      return undefined;
    if (
      typeof stored.fingerprint !== 'string' ||
      typeof stored.csum !== 'string' ||
      typeof stored.size !== 'number'
    )
      return undefined;
    return {
      fingerprint: stored.fingerprint,
      csum: stored.csum,
      size: stored.size,
      entries: typeof stored.entries === 'string' ? Buffer.from(stored.entries, 'base64') : undefined,
      dirs: typeof stored.dirs === 'string' ? Buffer.from(stored.dirs, 'base64') : undefined,
      walkedAtMs: typeof stored.walkedAtMs === 'number' ? stored.walkedAtMs : undefined,
    };
  }

  store(key: TreeCacheKey, entry: TreeCacheEntry): void {
    mkdirSync(this.dir, { recursive: true, mode: 0o700 });
    const stored: StoredEntry = {
      version: CACHE_VERSION,
      key,
      fingerprint: entry.fingerprint,
      csum: entry.csum,
      size: entry.size,
      entries: entry.entries?.toString('base64'),
      dirs: entry.dirs?.toString('base64'),
      walkedAtMs: entry.walkedAtMs,
    };
    replaceFile(this.path(key), JSON.stringify(stored) + '\n', { mode: 0o600 });
  }

  forget(key: TreeCacheKey): void {
    rmSync(this.path(key), { force: true });
  }
}
