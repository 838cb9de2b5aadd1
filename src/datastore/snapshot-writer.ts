/**
 * The one way the protocol layer writes and reads a snapshot's files: a `SnapshotWriter` for the
 * snapshot a backup session creates, a `SnapshotReader` for one it downloads from (the reader
 * session's snapshot, a backup's incremental base). Callers name files, never paths; the on-disk
 * layout (reference §7.1) stays in `datastore/`.
 *
 * Neither takes locks: the session holds the snapshot lock (exclusive for the writer, shared for
 * a reader) from before the writer or reader exists until after it is dropped.
 */
import { existsSync, readdirSync, readFileSync, rmSync, unlinkSync } from 'node:fs';
import { BACKUP_FILE_REGEX } from '../api-types/names.js';
import { join } from 'node:path';
import { replaceFile } from '../sys/atomic-file.js';
import {
  OWNER_FILE_NAME,
  groupPath,
  listSnapshots,
  type BackupDir,
  type BackupStore,
} from './backup-info.js';
import type { ChunkBackend, SyncLevel } from './chunk-backend.js';
import { DynamicIndexWriter } from './dynamic-index.js';
import { FixedIndexReader, FixedIndexWriter } from './fixed-index.js';
import type { IndexCloseResult } from './index-file.js';
import { MANIFEST_BLOB_NAME, encodeManifest, type BackupManifest } from './manifest.js';

function errno(err: unknown): string | undefined {
  return (err as NodeJS.ErrnoException | undefined)?.code;
}

/** Read access to the files of one existing snapshot. */
export class SnapshotReader {
  readonly dir: BackupDir;
  private readonly path: string;

  constructor(path: string, dir: BackupDir) {
    this.path = path;
    this.dir = dir;
  }

  /**
   * Where a file of this snapshot is, for log lines and error messages only (PBS names the
   * server path in both).
   */
  describe(name: string): string {
    return join(this.path, name);
  }

  /** Whether the snapshot is still there (a base removed during a backup is not). */
  exists(): boolean {
    return existsSync(this.path);
  }

  /** A file's bytes as stored, or undefined when the snapshot has no such file. */
  readFile(name: string): Buffer | undefined {
    try {
      return readFileSync(join(this.path, name));
    } catch (err) {
      if (errno(err) === 'ENOENT') return undefined;
      throw err;
    }
  }

  /** A fixed index of this snapshot, or undefined when there is none by that name. */
  openFixedIndex(name: string): FixedIndexReader | undefined {
    const path = join(this.path, name);
    if (!existsSync(path)) return undefined;
    return FixedIndexReader.open(path);
  }
}

/** What a writer needs of its datastore. */
export interface SnapshotWriterStore extends BackupStore {
  readonly syncLevel: SyncLevel;
  readonly chunks: ChunkBackend;
}

/**
 * The files of one snapshot being written by a backup session. Blobs appear whole (temp file +
 * rename); indexes are written under a temp name and renamed in on close; the client's manifest
 * is staged under another name until `finish`, so the snapshot never looks finished (§7.1
 * "finished = manifest exists") before it is.
 */
export class SnapshotWriter {
  readonly dir: BackupDir;
  private readonly store: SnapshotWriterStore;
  private readonly path: string;
  private staged = false;

  /** Name the client's manifest waits under until `finish` (not matched by BACKUP_FILE_REGEX). */
  static readonly STAGED_MANIFEST = `${MANIFEST_BLOB_NAME}.tmp_upload`;

  /** `path` is the snapshot directory just created (and locked) for `dir`. */
  constructor(store: SnapshotWriterStore, dir: BackupDir, path: string) {
    this.store = store;
    this.dir = dir;
    this.path = path;
  }

  /** Keep the client's manifest aside until `finish`; a second one replaces the first. */
  stageManifest(blob: Buffer): void {
    replaceFile(join(this.path, SnapshotWriter.STAGED_MANIFEST), blob, { mode: 0o644 });
    this.staged = true;
  }

  /** The staged manifest's bytes, or undefined when none was staged. */
  stagedManifest(): Buffer | undefined {
    if (!this.staged) return undefined;
    return readFileSync(join(this.path, SnapshotWriter.STAGED_MANIFEST));
  }

  /**
   * Store a blob, or an index file as it is (a sync), fsynced under sync-level `file`. The caller
   * has checked its name and contents.
   */
  addBlob(name: string, blob: Buffer): void {
    replaceFile(join(this.path, name), blob, { mode: 0o644, fsync: this.store.syncLevel === 'file' });
  }

  createDynamicIndex(name: string): DynamicIndexWriter {
    return DynamicIndexWriter.create(join(this.path, name), { syncLevel: this.store.syncLevel });
  }

  /** `size` undefined: an image of unknown size, fixed on close (PBS bug 3847). */
  createFixedIndex(name: string, size: number | undefined, chunkSize: number): FixedIndexWriter {
    return FixedIndexWriter.create(join(this.path, name), {
      size,
      chunkSize,
      syncLevel: this.store.syncLevel,
    });
  }

  /**
   * Close an index this writer created and compare its checksum with the client's: on a
   * mismatch the index is removed again and undefined returned.
   */
  closeIndex(
    index: DynamicIndexWriter | FixedIndexWriter,
    expectedCsumHex: string,
  ): IndexCloseResult | undefined {
    const res = index.close();
    if (res.csum.toString('hex') === expectedCsumHex) return res;
    rmSync(index.path, { force: true });
    return undefined;
  }

  /**
   * Make the snapshot finished: chunks durable first (sync-level `filesystem`, PBS
   * `try_ensure_sync_level`), then the manifest, then the staged copy goes. On an S3 datastore
   * the snapshot's files and then its manifest are uploaded before the local manifest is
   * written: a failed upload leaves an unfinished snapshot, which the session removes.
   */
  async finish(manifest: BackupManifest): Promise<void> {
    if (this.store.syncLevel === 'filesystem') await this.store.chunks.flush();
    await this.storeManifestBlob(encodeManifest(manifest));
    if (this.staged) unlinkSync(join(this.path, SnapshotWriter.STAGED_MANIFEST));
    this.staged = false;
  }

  /**
   * Make the snapshot finished with a manifest blob taken as it is (a sync copies the source's
   * bytes, so its signature stays valid and the next sync can compare them): chunks durable
   * first, as in `finish`, then the blob, atomically.
   */
  async finishWithManifestBlob(blob: Buffer): Promise<void> {
    if (this.store.syncLevel === 'filesystem') await this.store.chunks.flush();
    await this.storeManifestBlob(blob);
  }

  /**
   * The mirror's copy of the group's owner and of every file, the manifest last (PBS 4: a
   * snapshot without it is unfinished), then the local manifest. The owner goes with every
   * snapshot (one small PUT) rather than when the group is created, so a first backup that fails
   * leaves nothing in the bucket.
   */
  private async storeManifestBlob(blob: Buffer): Promise<void> {
    const mirror = this.store.mirror;
    if (mirror) {
      await mirror.putFile(`${this.dir.group.relativePath}/${OWNER_FILE_NAME}`);
      for (const name of readdirSync(this.path).sort()) {
        if (!BACKUP_FILE_REGEX.test(name) || name === MANIFEST_BLOB_NAME) continue;
        await mirror.putFile(`${this.dir.relativePath}/${name}`);
      }
      await mirror.put(`${this.dir.relativePath}/${MANIFEST_BLOB_NAME}`, blob);
    }
    replaceFile(join(this.path, MANIFEST_BLOB_NAME), blob, {
      mode: 0o644,
      fsync: this.store.syncLevel === 'file',
    });
  }

  /**
   * Remove the snapshot, finished or not (an unfinished backup, a benchmark). With
   * `removeEmptyGroup` (the session created the group) the group goes too when no snapshot is
   * left in it.
   */
  abort(opts: { removeEmptyGroup?: boolean } = {}): void {
    rmSync(this.path, { recursive: true, force: true });
    let emptyGroup = false;
    if (opts.removeEmptyGroup) {
      try {
        if (listSnapshots(this.store, this.dir.group).length === 0) {
          rmSync(groupPath(this.store, this.dir.group), { recursive: true, force: true });
          emptyGroup = true;
        }
      } catch {
        // group already gone
      }
    }
    // What a failed finish uploaded (never a manifest): removed in the background, as callers
    // clean up synchronously; a leftover is no snapshot and goes with the next refresh's cleanup.
    const mirror = this.store.mirror;
    if (mirror) {
      const rel = emptyGroup ? this.dir.group.relativePath : this.dir.relativePath;
      mirror.deleteDir(rel).catch(() => {});
    }
  }
}
