/**
 * Where a pull reads from: another datastore of this instance (a local sync, read-admitted) or a
 * remote's datastore (its API and reader protocol, remote-source.ts). The pull engine (pull.ts)
 * sees only this interface, so both are synced by the same code.
 */
import type { BackupDir, BackupGroup, BackupNamespace } from '../datastore/index.js';
import type { ListedSnapshot } from './snapshot-filter.js';

export interface SyncSource {
  /** For log lines: `remote 'offsite' datastore 'store1'` or `datastore 'store1'`. */
  readonly description: string;
  /** `root` and the namespaces below it, down to `maxDepth` levels (all without), parents first. */
  listNamespaces(root: BackupNamespace, maxDepth: number | undefined): Promise<BackupNamespace[]>;
  listGroups(ns: BackupNamespace): Promise<BackupGroup[]>;
  /**
   * The snapshots of `group`, oldest first: their times, which are still being written (those
   * are never synced), their verify state and files (for `verified-only` / `encrypted-only`).
   */
  listSnapshots(group: BackupGroup): Promise<ListedSnapshot[]>;
  /** Open one snapshot for reading (a reader session, a shared snapshot lock). */
  openReader(dir: BackupDir): Promise<SyncReader>;
}

export interface SyncReader {
  /** A file of the snapshot as stored (a blob, an index), or undefined when it is not there. */
  file(name: string): Promise<Buffer | undefined>;
  /** A chunk's blob as stored. */
  chunk(digest: Buffer): Promise<Buffer>;
  close(): Promise<void>;
}
