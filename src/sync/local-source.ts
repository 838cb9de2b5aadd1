/**
 * A local datastore as a sync source (a pull without `remote`): read under the source's own read
 * admission, so `read-only` lets it be synced from and `offline` refuses it with its message.
 * Each snapshot is read under its shared lock, as a reader session holds it.
 */
import {
  MANIFEST_BLOB_NAME,
  manifestCryptMode,
  type BackupDir,
  type BackupGroup,
  type BackupNamespace,
  type ReadonlyDatastore,
} from '../datastore/index.js';
import type { ListedSnapshot } from './snapshot-filter.js';
import type { SyncReader, SyncSource } from './sync-source.js';

/**
 * The snapshots of a local group as a sync lists them (a pull's local source, a push's source),
 * oldest first. A finished snapshot whose manifest cannot be read is listed without files or
 * verify state: `verified-only` and `encrypted-only` leave it out, a plain sync reports it when
 * it reads the manifest.
 */
export function listLocalSnapshots(ds: ReadonlyDatastore, group: BackupGroup): ListedSnapshot[] {
  return ds.listSnapshots(group).map((s) => {
    const listed: ListedSnapshot = { time: s.dir.time, inProgress: !s.finished, files: [] };
    if (!s.finished) return listed;
    try {
      const m = ds.loadManifest(s.dir);
      const state = m.unprotected.verify_state?.state;
      return {
        ...listed,
        ...(state !== undefined && { verifyState: state }),
        files: [
          ...m.files.map((f) => ({ filename: f.filename, cryptMode: f['crypt-mode'] })),
          { filename: MANIFEST_BLOB_NAME, cryptMode: manifestCryptMode(m) },
        ],
      };
    } catch {
      return listed;
    }
  });
}

export class LocalSyncSource implements SyncSource {
  readonly description: string;

  constructor(private readonly ds: ReadonlyDatastore) {
    this.description = `datastore '${ds.name}'`;
  }

  async listNamespaces(root: BackupNamespace, maxDepth: number | undefined): Promise<BackupNamespace[]> {
    if (!this.ds.namespaceExists(root)) return [];
    return this.ds.listNamespaces(root, maxDepth);
  }

  async listGroups(ns: BackupNamespace): Promise<BackupGroup[]> {
    return this.ds.listGroups(ns);
  }

  async listSnapshots(group: BackupGroup): Promise<ListedSnapshot[]> {
    return listLocalSnapshots(this.ds, group);
  }

  async openReader(dir: BackupDir): Promise<SyncReader> {
    const lock = await this.ds.locks.tryLockSnapshot(dir, 'snapshot is being synced', { shared: true });
    const reader = this.ds.openSnapshotReader(dir);
    const chunks = this.ds.chunks;
    return {
      file: async (name) => reader.readFile(name),
      chunk: (digest) => chunks.load(digest),
      close: async () => lock.release(),
    };
  }
}
