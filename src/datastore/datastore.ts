/**
 * The datastore facade: one open datastore, composing its chunk store with the backup tree
 * (namespaces, groups, snapshots, manifests), prune and garbage collection.
 *
 * This class must only be reached through the maintenance core's `lookupDatastore`, which checks
 * the maintenance mode and registers the operation before handing out a handle (maintenance.md
 * §2). Nothing here caches or registers open datastores: there is deliberately no global map of
 * them, so the only way to a datastore's files is the admitted handle, and closing it really
 * releases the disk.
 */
import { existsSync, mkdtempSync, renameSync, rmSync, statfsSync } from 'node:fs';
import { join } from 'node:path';
import { BACKUP_TYPES } from '../api-types/names.js';
import { ERR_DATASTORE_CLOSED, ERR_NOT_S3_DATASTORE } from '../errors.js';
import { validateDatastoreName } from '../api-types/names.js';
import {
  BackupDir,
  BackupGroup,
  BackupNamespace,
  type AbandonedSnapshotsResult,
  type BackupStore,
  type DeleteGroupResult,
  type DeleteNamespaceResult,
  type SnapshotFile,
  type SnapshotInfo,
  createLockedBackupDir,
  changeOwner,
  createLockedBackupGroup,
  createNamespace,
  deleteGroup,
  deleteNamespace,
  deleteSnapshot,
  getGroupNotes,
  getOwner,
  getSnapshotNotes,
  groupExists,
  groupPath,
  isProtected,
  listGroups,
  listNamespaces,
  listSnapshots,
  manifestUpload,
  namespaceExists,
  removeAbandonedSnapshots,
  setGroupNotes,
  setOwner,
  setProtected,
  setSnapshotNotes,
  snapshotFiles,
  snapshotPath,
} from './backup-info.js';
import type { ArchiveName } from '../api-types/archive-name.js';
import type { ChunkBackend, SyncLevel } from './chunk-backend.js';
import { DatastoreLocks } from './datastore-locks.js';
import type { HeldLock, LockService } from './lock-service.js';
import {
  type GarbageCollectionOptions,
  type GarbageCollectionStatus,
  garbageCollection,
  readGcStatus,
} from './gc.js';
import { type BackupManifest, loadManifest, updateManifest } from './manifest.js';
import { type KeepOptions, type PruneResult, pruneGroup } from './prune.js';
import {
  type FileContent,
  addSnapshotBlob,
  openDecodedSnapshotFile,
  openSnapshotArchive,
  openSnapshotFile,
} from './snapshot-files.js';
import type { ArchiveReadAt } from './index-read-at.js';
import { type SnapshotVerifyResult, type VerifyOptions, verifySnapshot } from './verify.js';
import { SnapshotReader, SnapshotWriter } from './snapshot-writer.js';
import { NAMESPACE_MARKER_NAME, type ContentMirror } from './content-mirror.js';
import { S3ChunkBackend } from './s3-chunk-backend.js';
import type { S3RequestCounters } from '../s3/s3-client.js';
import { WriterRegistry } from './writer-registry.js';

export interface DatastoreOptions {
  /**
   * The datastore's chunks, opened (or created) by the caller for this datastore: admission
   * picks the backend from the configuration (src/maintenance/chunk-backend-for.ts). The
   * datastore owns it from here on and closes it in `close()`.
   */
  chunks: ChunkBackend;
  /**
   * The locks the datastore's processes share (group, snapshot, manifest, GC): admission passes
   * its backend's (`AdmissionBackend.locks`). The datastore takes every lock through it.
   */
  locks: LockService;
  /** What the datastore fsyncs besides the chunks (manifests, indexes, blobs); PBS's default `filesystem`. */
  syncLevel?: SyncLevel;
}

export interface TypeCounts {
  groups: number;
  snapshots: number;
}

/** PBS's status `counts`: groups and snapshots per backup type. */
export interface DatastoreCounts {
  ct: TypeCounts;
  host: TypeCounts;
  vm: TypeCounts;
  /**
   * PBS reserves this for unknown backup types. Group listing only accepts vm, ct and host, so
   * it stays zero; it is there so the API shape matches.
   */
  other: TypeCounts;
}

/** Filesystem usage of the datastore's path, in bytes (PBS `DataStoreStatus`). */
export interface DatastoreStatus {
  total: number;
  used: number;
  avail: number;
}

/** What a `read` admission may do with chunks: look, never change. */
export type ReadonlyChunks = Pick<ChunkBackend, 'load' | 'exists' | 'list'>;

/**
 * The datastore as a `read` admission sees it (maintenance.md §2): listing, reading files and
 * chunks, status, a prune preview and a verify that records nothing. A handler holding a read
 * admission cannot call a writing method (a type error), so a read-only datastore stays
 * unmodified by construction. No paths: callers reach files only through these methods.
 */
export interface ReadonlyDatastore {
  readonly name: string;
  /** Group and snapshot locks (through the lock service, not in the datastore), e.g. a reader's shared lock. */
  readonly locks: DatastoreLocks;
  readonly chunks: ReadonlyChunks;
  listNamespaces(parent?: BackupNamespace, maxDepth?: number): BackupNamespace[];
  namespaceExists(ns: BackupNamespace): boolean;
  listGroups(ns?: BackupNamespace): BackupGroup[];
  groupExists(group: BackupGroup): boolean;
  listSnapshots(group: BackupGroup): SnapshotInfo[];
  snapshotFiles(dir: BackupDir): SnapshotFile[];
  loadManifest(dir: BackupDir): BackupManifest;
  getProtected(dir: BackupDir): boolean;
  getNotes(target: BackupGroup | BackupDir): string;
  getOwner(group: BackupGroup): string;
  openSnapshotFile(dir: BackupDir, file: ArchiveName): FileContent;
  openDecodedSnapshotFile(dir: BackupDir, file: ArchiveName): FileContent;
  /** Random access to an index's archive (pxar lookups, catalogs); checked as the decoded download. */
  openSnapshotArchive(dir: BackupDir, file: ArchiveName): ArchiveReadAt;
  openSnapshotReader(dir: BackupDir): SnapshotReader;
  /** Under a read admission only the preview: what a prune would keep and remove. */
  prune(group: BackupGroup, opts: KeepOptions, runOpts: { dryRun: true }): Promise<PruneResult[]>;
  gcStatus(): GarbageCollectionStatus | undefined;
  /** Under a read admission only `mode: 'read'`, which records nothing on the datastore. */
  verifySnapshot(dir: BackupDir, opts: VerifyOptions & { mode: 'read' }): Promise<SnapshotVerifyResult>;
  counts(): DatastoreCounts;
  status(): DatastoreStatus;
  /** PBS 4 `backend-type`: where the chunks are. */
  readonly backendType: 'filesystem' | 's3';
  /** PBS 4 `s3-statistics`: an S3 datastore's requests and traffic; undefined on a filesystem one. */
  s3Statistics(): S3RequestCounters | undefined;
}

/** The datastore as a `write` admission sees it: everything a read admission may do, and writing. */
export interface WritableDatastore extends ReadonlyDatastore {
  readonly chunks: ChunkBackend;
  /** Backup sessions of this process writing chunks not indexed yet (GC spares their chunks). */
  readonly writers: WriterRegistry;
  createNamespace(ns: BackupNamespace): Promise<void>;
  deleteNamespace(ns: BackupNamespace, opts?: { deleteGroups?: boolean }): Promise<DeleteNamespaceResult>;
  updateManifest(
    dir: BackupDir,
    mutate: (m: BackupManifest) => void | Promise<void>,
  ): Promise<BackupManifest>;
  deleteSnapshot(dir: BackupDir): Promise<void>;
  deleteGroup(group: BackupGroup): Promise<DeleteGroupResult>;
  setProtected(dir: BackupDir, value: boolean): Promise<void>;
  setNotes(target: BackupGroup | BackupDir, notes: string): Promise<void>;
  setOwner(group: BackupGroup, authId: string, opts?: { force?: boolean }): void;
  changeOwner(group: BackupGroup, expectedOwner: string, newOwner: string): Promise<void>;
  addSnapshotBlob(
    dir: BackupDir,
    file: ArchiveName,
    bytes: Buffer,
    opts?: { existsMessage?: string },
  ): Promise<void>;
  createLockedBackupGroup(
    group: BackupGroup,
    authId: string,
    opts?: { timeoutMs?: number },
  ): Promise<{ owner: string; lock: HeldLock }>;
  createSnapshotWriter(dir: BackupDir): Promise<{ writer: SnapshotWriter; lock: HeldLock }>;
  /** The writer of an existing snapshot (a sync re-syncing it); the caller holds its lock exclusively. */
  openSnapshotWriter(dir: BackupDir): SnapshotWriter;
  prune(group: BackupGroup, opts: KeepOptions, runOpts?: { dryRun?: boolean }): Promise<PruneResult[]>;
  /** Remove unfinished snapshots no live backup session owns (start-up; GC does it too). */
  removeAbandonedSnapshots(log: (line: string) => void): Promise<AbandonedSnapshotsResult>;
  garbageCollection(opts?: GarbageCollectionOptions): Promise<GarbageCollectionStatus>;
  verifySnapshot(dir: BackupDir, opts: VerifyOptions): Promise<SnapshotVerifyResult>;
}

/**
 * The open datastore. Only admission (src/maintenance/) opens, creates and closes it; everyone
 * else holds it as a `ReadonlyDatastore` or `WritableDatastore`, which carry no paths.
 */
export class Datastore implements BackupStore, WritableDatastore {
  readonly name: string;
  readonly basePath: string;
  readonly locks: DatastoreLocks;
  readonly syncLevel: SyncLevel;
  /** Backup sessions of this process writing chunks not indexed yet (GC spares their chunks). */
  readonly writers = new WriterRegistry();
  /** An S3 datastore's `.cnt/` objects, kept in step with the backup tree here (content-mirror.ts). */
  readonly mirror: ContentMirror | undefined;
  private store: ChunkBackend | undefined;

  private constructor(name: string, basePath: string, opts: DatastoreOptions) {
    try {
      validateDatastoreName(name, 'name');
    } catch (err) {
      opts.chunks.close().catch(() => {}); // ours from the call on, even when refused
      throw err;
    }
    this.name = name;
    this.basePath = basePath;
    this.store = opts.chunks;
    this.mirror = opts.chunks instanceof S3ChunkBackend ? opts.chunks.contentMirror(basePath) : undefined;
    this.syncLevel = opts.syncLevel ?? 'filesystem';
    this.locks = new DatastoreLocks(opts.locks, name);
  }

  /**
   * A new datastore at `basePath`, on a chunk backend the caller has just created
   * (`createChunkBackend`); the backup tree needs nothing created up front.
   */
  static create(name: string, basePath: string, opts: DatastoreOptions): Datastore {
    return new Datastore(name, basePath, opts);
  }

  /**
   * An existing datastore on its opened chunk backend (`openChunkBackend`, which fails with
   * NOT_FOUND when the chunk store is missing, e.g. not mounted).
   */
  static open(name: string, basePath: string, opts: DatastoreOptions): Datastore {
    return new Datastore(name, basePath, opts);
  }

  get backendType(): 'filesystem' | 's3' {
    return this.mirror ? 's3' : 'filesystem';
  }

  s3Statistics(): S3RequestCounters | undefined {
    const chunks = this.chunks;
    return chunks instanceof S3ChunkBackend ? chunks.requestCounters() : undefined;
  }

  get isOpen(): boolean {
    return this.store !== undefined;
  }

  /** The datastore's chunks (the injected backend); refused once the handle is closed. */
  get chunks(): ChunkBackend {
    if (this.store === undefined) {
      throw ERR_DATASTORE_CLOSED(this.name);
    }
    return this.store;
  }

  /**
   * Close every file this handle holds under `basePath` (the chunk store's `.lock`), so an
   * offline datastore's filesystem can be unmounted. Locks belong to the lock service and are
   * only held for the duration of a call (or a session). Idempotent.
   */
  close(): void {
    const store = this.store;
    this.store = undefined;
    // The filesystem backend closes its descriptor before close() first yields, so the path is
    // released when this returns; a backend's failure to close leaves nothing for us to do.
    store?.close().catch(() => {});
  }

  /**
   * PBS 4's `s3_refresh`: replace the cache's backup tree (`vm/`, `ct/`, `host/`, `ns/`) with the
   * bucket's `.cnt/` objects, downloaded into a temp dir first so a failed download changes
   * nothing. The caller keeps every other operation away (the `s3-refresh` mode, or a datastore
   * not yet in the configuration). Returns the number of files fetched.
   */
  async refreshFromBucket(log: (line: string) => void): Promise<number> {
    const mirror = this.open().mirror;
    if (!mirror) throw ERR_NOT_S3_DATASTORE(this.name);
    const tmp = mkdtempSync(join(this.basePath, '.tmp-s3-refresh-'));
    try {
      const files = await mirror.fetchAll(tmp, log);
      for (const top of [...BACKUP_TYPES, 'ns']) {
        rmSync(join(this.basePath, top), { recursive: true, force: true });
        if (existsSync(join(tmp, top))) renameSync(join(tmp, top), join(this.basePath, top));
      }
      return files;
    } finally {
      rmSync(tmp, { recursive: true, force: true });
    }
  }

  /** Every method below touches the disk, so none may run on a closed handle. */
  private open(): this {
    void this.chunks;
    return this;
  }

  snapshotPath(dir: BackupDir): string {
    return snapshotPath(this.open(), dir);
  }

  groupPath(group: BackupGroup): string {
    return groupPath(this.open(), group);
  }

  listNamespaces(parent: BackupNamespace = BackupNamespace.root(), maxDepth?: number): BackupNamespace[] {
    return listNamespaces(this.open(), parent, maxDepth);
  }

  /** Create a namespace; on S3 its `.namespace` marker object too, so a refresh keeps it when empty. */
  async createNamespace(ns: BackupNamespace): Promise<void> {
    createNamespace(this.open(), ns);
    await this.mirror?.put(`${ns.path}/${NAMESPACE_MARKER_NAME}`, Buffer.alloc(0));
  }

  namespaceExists(ns: BackupNamespace): boolean {
    return namespaceExists(this.open(), ns);
  }

  /** Delete a namespace and those below it; groups only with `deleteGroups` (see backup-info). */
  deleteNamespace(
    ns: BackupNamespace,
    opts: { deleteGroups?: boolean } = {},
  ): Promise<DeleteNamespaceResult> {
    return deleteNamespace(this.open(), ns, opts);
  }

  listGroups(ns: BackupNamespace = BackupNamespace.root()): BackupGroup[] {
    return listGroups(this.open(), ns);
  }

  groupExists(group: BackupGroup): boolean {
    return groupExists(this.open(), group);
  }

  listSnapshots(group: BackupGroup): SnapshotInfo[] {
    return listSnapshots(this.open(), group);
  }

  snapshotFiles(dir: BackupDir): SnapshotFile[] {
    return snapshotFiles(this.open(), dir);
  }

  loadManifest(dir: BackupDir): BackupManifest {
    return loadManifest(this.snapshotPath(dir));
  }

  /** Change the manifest's unprotected part under the manifest lock (reference §7.5). */
  updateManifest(
    dir: BackupDir,
    mutate: (m: BackupManifest) => void | Promise<void>,
  ): Promise<BackupManifest> {
    return updateManifest(this.snapshotPath(dir), mutate, {
      lock: (timeoutMs) => this.locks.lockManifest(dir, { timeoutMs }),
      fsync: this.syncLevel === 'file',
      upload: manifestUpload(this, dir),
    });
  }

  deleteSnapshot(dir: BackupDir): Promise<void> {
    return deleteSnapshot(this.open(), dir);
  }

  deleteGroup(group: BackupGroup): Promise<DeleteGroupResult> {
    return deleteGroup(this.open(), group);
  }

  getProtected(dir: BackupDir): boolean {
    return isProtected(this.open(), dir);
  }

  setProtected(dir: BackupDir, value: boolean): Promise<void> {
    return setProtected(this.open(), dir, value);
  }

  /** Notes of a group (its `notes` file) or of a snapshot (manifest `unprotected.notes`). */
  getNotes(target: BackupGroup | BackupDir): string {
    return target instanceof BackupDir
      ? getSnapshotNotes(this.open(), target)
      : getGroupNotes(this.open(), target);
  }

  async setNotes(target: BackupGroup | BackupDir, notes: string): Promise<void> {
    if (target instanceof BackupDir) await setSnapshotNotes(this.open(), target, notes);
    else await setGroupNotes(this.open(), target, notes);
  }

  getOwner(group: BackupGroup): string {
    return getOwner(this.open(), group);
  }

  setOwner(group: BackupGroup, authId: string, opts: { force?: boolean } = {}): void {
    setOwner(this.open(), group, authId, opts);
  }

  /** Give a group still owned by `expectedOwner` to `newOwner`, under the group lock. */
  changeOwner(group: BackupGroup, expectedOwner: string, newOwner: string): Promise<void> {
    return changeOwner(this.open(), group, expectedOwner, newOwner, { fsync: this.syncLevel === 'file' });
  }

  /** A snapshot file as stored, as a stream that closes its descriptor when done. */
  openSnapshotFile(dir: BackupDir, file: ArchiveName): FileContent {
    return openSnapshotFile(this.open(), dir, file);
  }

  /** A snapshot file decoded: a blob's payload, an index's archive streamed from its chunks. */
  openDecodedSnapshotFile(dir: BackupDir, file: ArchiveName): FileContent {
    return openDecodedSnapshotFile(this.open(), dir, file);
  }

  /** Random access to the archive an index describes, read from its chunks as needed. */
  openSnapshotArchive(dir: BackupDir, file: ArchiveName): ArchiveReadAt {
    return openSnapshotArchive(this.open(), dir, file);
  }

  /** Add a new blob to a snapshot, never replacing one (see snapshot-files). */
  addSnapshotBlob(
    dir: BackupDir,
    file: ArchiveName,
    bytes: Buffer,
    opts: { existsMessage?: string } = {},
  ): Promise<void> {
    return addSnapshotBlob(this.open(), dir, file, bytes, { ...opts, fsync: this.syncLevel === 'file' });
  }

  /** For the backup session: open or create a group, holding its lock (see backup-info). */
  createLockedBackupGroup(
    group: BackupGroup,
    authId: string,
    opts: { timeoutMs?: number } = {},
  ): Promise<{ owner: string; lock: HeldLock }> {
    return createLockedBackupGroup(this.open(), group, authId, opts);
  }

  createLockedBackupDir(dir: BackupDir): Promise<{ path: string; lock: HeldLock }> {
    return createLockedBackupDir(this.open(), dir);
  }

  /**
   * For the backup session: create the snapshot directory of `dir`, locked exclusively, and the
   * writer of its files (ALREADY_EXISTS when the snapshot exists).
   */
  async createSnapshotWriter(dir: BackupDir): Promise<{ writer: SnapshotWriter; lock: HeldLock }> {
    const { path, lock } = await createLockedBackupDir(this.open(), dir);
    return { writer: new SnapshotWriter(this, dir, path), lock };
  }

  /**
   * The writer of an existing snapshot's files, for a sync that re-syncs it; the caller holds the
   * snapshot's lock exclusively.
   */
  openSnapshotWriter(dir: BackupDir): SnapshotWriter {
    return new SnapshotWriter(this, dir, this.snapshotPath(dir));
  }

  /** Read access to an existing snapshot's files; the caller holds its lock (shared). */
  openSnapshotReader(dir: BackupDir): SnapshotReader {
    return new SnapshotReader(this.snapshotPath(dir), dir);
  }

  prune(group: BackupGroup, opts: KeepOptions, runOpts: { dryRun?: boolean } = {}): Promise<PruneResult[]> {
    return pruneGroup(this.open(), group, opts, runOpts);
  }

  removeAbandonedSnapshots(log: (line: string) => void): Promise<AbandonedSnapshotsResult> {
    return removeAbandonedSnapshots(this.open(), log);
  }

  /** GC; its first phase also removes abandoned unfinished snapshots (removeAbandonedSnapshots). */
  garbageCollection(opts: GarbageCollectionOptions = {}): Promise<GarbageCollectionStatus> {
    return garbageCollection(this.open(), opts);
  }

  /** The last GC result (`.gc-status`), or undefined when GC never ran on this datastore. */
  gcStatus(): GarbageCollectionStatus | undefined {
    return readGcStatus(this.open().basePath);
  }

  /** Verify one snapshot; `write` mode records the result in its manifest (see verify.ts). */
  verifySnapshot(dir: BackupDir, opts: VerifyOptions): Promise<SnapshotVerifyResult> {
    return verifySnapshot(this.open(), dir, { fsync: this.syncLevel === 'file', ...opts });
  }

  /**
   * Groups and snapshots per type over all namespaces, as PBS's status counts: groups without
   * any snapshot are not counted (PBS: "counting/displaying empty groups can confuse"), and
   * unfinished snapshots are.
   */
  counts(): DatastoreCounts {
    const counts: DatastoreCounts = {
      ct: { groups: 0, snapshots: 0 },
      host: { groups: 0, snapshots: 0 },
      vm: { groups: 0, snapshots: 0 },
      other: { groups: 0, snapshots: 0 },
    };
    for (const ns of this.listNamespaces()) {
      for (const group of this.listGroups(ns)) {
        const n = this.listSnapshots(group).length;
        if (n === 0) continue;
        counts[group.type].groups++;
        counts[group.type].snapshots += n;
      }
    }
    return counts;
  }

  /** Total, used and available bytes of the filesystem holding the datastore. */
  status(): DatastoreStatus {
    const st = statfsSync(this.open().basePath);
    const total = st.blocks * st.bsize;
    return { total, used: total - st.bfree * st.bsize, avail: st.bavail * st.bsize };
  }
}
