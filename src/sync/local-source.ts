/**
 * A local datastore as a sync source (a pull without `remote`): read under the source's own read
 * admission, so `read-only` lets it be synced from and `offline` refuses it with its message.
 * Each snapshot is read under its shared lock, as a reader session holds it.
 */
import type { BackupDir, BackupGroup, BackupNamespace, ReadonlyDatastore } from '../datastore/index.js';
import type { SyncReader, SyncSource } from './sync-source.js';

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

  async listSnapshots(group: BackupGroup): Promise<Array<{ time: number; inProgress: boolean }>> {
    return this.ds.listSnapshots(group).map((s) => ({ time: s.dir.time, inProgress: !s.finished }));
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
