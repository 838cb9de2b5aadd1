/**
 * The client's tree cache: for each (server, datastore, group, archive, source directory), the
 * fingerprint of the tree's metadata at its last backup and the checksum of the index that backup
 * produced. When the next backup finds the same fingerprint, the tar stream would be
 * byte-identical (see `TreeFingerprint` in tar-archive.ts), so its chunks and its index are the
 * previous snapshot's: the writer appends them by digest (`BackupWriter.reuseStream`) without
 * reading a single file. This is restic's and borg's files cache, all or nothing, because chunks
 * of a tar stream span many files.
 *
 * The checksum ties the entry to an index, not to a snapshot: whatever snapshot the server offers
 * as the incremental base, its index is reused only when it is that exact index.
 *
 * Losing the cache costs one full read; a wrong entry cannot produce a wrong backup unless the
 * fingerprint matched, so entries are plain JSON files, one per key, replaced atomically.
 */
import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync, rmSync } from 'node:fs';
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
}

export interface TreeCacheEntry {
  /** `TreeFingerprint.digest` of the tree that was archived. */
  fingerprint: string;
  /** Index checksum (as in the manifest) of the archive that tree produced. */
  csum: string;
  /** Archive size in bytes. */
  size: number;
}

interface StoredEntry extends TreeCacheEntry {
  version: number;
  key: TreeCacheKey;
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
    return { fingerprint: stored.fingerprint, csum: stored.csum, size: stored.size };
  }

  store(key: TreeCacheKey, entry: TreeCacheEntry): void {
    mkdirSync(this.dir, { recursive: true, mode: 0o700 });
    const stored: StoredEntry = { version: CACHE_VERSION, key, ...entry };
    replaceFile(this.path(key), JSON.stringify(stored) + '\n', { mode: 0o600 });
  }

  forget(key: TreeCacheKey): void {
    rmSync(this.path(key), { force: true });
  }
}
