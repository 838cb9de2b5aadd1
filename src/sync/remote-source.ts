/**
 * A remote's datastore as a sync source, read the way a PBS client reads it: the listing calls
 * of its API (namespaces, groups, snapshots) and a reader-protocol session per snapshot for its
 * files and chunks. Every refusal of the remote (an `offline` datastore's 503 with its message, a
 * missing privilege) comes back as the remote's own error, so the task log says what the remote
 * said.
 */
import { READER_PATH, READER_PROTOCOL_ID } from '../api-types/protocol.js';
import type { ApiClient, ProtocolSession } from '../client/connection.js';
import { openSnapshotSession } from '../client/connection.js';
import { BackupGroup, BackupNamespace, type BackupDir } from '../datastore/index.js';
import { isStowageError } from '../errors.js';
import type { ListedSnapshot } from './snapshot-filter.js';
import type { SyncReader, SyncSource } from './sync-source.js';

interface NamespaceItem {
  ns: string;
}
interface GroupItem {
  'backup-type': string;
  'backup-id': string;
}
interface SnapshotItem {
  'backup-time': number;
  /** Absent while the backup is still running (PBS `filter_out_in_progress`). */
  size?: number;
  verification?: { state?: string };
  files?: Array<{ filename: string; 'crypt-mode'?: string }>;
}

export class RemoteSyncSource implements SyncSource {
  readonly description: string;

  /** `api` is logged in to the remote; `remoteName` is for log lines. */
  constructor(
    private readonly api: ApiClient,
    remoteName: string,
    private readonly store: string,
  ) {
    this.description = `remote '${remoteName}' datastore '${store}'`;
  }

  private get base(): string {
    return `/admin/datastore/${encodeURIComponent(this.store)}`;
  }

  async listNamespaces(root: BackupNamespace, maxDepth: number | undefined): Promise<BackupNamespace[]> {
    let items: NamespaceItem[];
    try {
      items = await this.api.call<NamespaceItem[]>('GET', `${this.base}/namespace`, {
        ...(root.isRoot() ? {} : { parent: root.name }),
        ...(maxDepth !== undefined && { 'max-depth': maxDepth }),
      });
    } catch (err) {
      // a remote without namespace support (PBS < 2.2) has the root only
      if (isStowageError(err) && err.status === 404 && root.isRoot()) return [root];
      throw err;
    }
    return items
      .map((i) => BackupNamespace.parse(i.ns))
      .sort((a, b) => a.depth - b.depth || (a.name < b.name ? -1 : 1));
  }

  async listGroups(ns: BackupNamespace): Promise<BackupGroup[]> {
    const items = await this.api.call<GroupItem[]>(
      'GET',
      `${this.base}/groups`,
      ns.isRoot() ? {} : { ns: ns.name },
    );
    return items.map((g) => new BackupGroup(ns, g['backup-type'], g['backup-id']));
  }

  async listSnapshots(group: BackupGroup): Promise<ListedSnapshot[]> {
    const items = await this.api.call<SnapshotItem[]>('GET', `${this.base}/snapshots`, {
      ...(group.ns.isRoot() ? {} : { ns: group.ns.name }),
      'backup-type': group.type,
      'backup-id': group.id,
    });
    return items
      .map((s) => ({
        time: s['backup-time'],
        inProgress: s.size === undefined,
        ...(s.verification?.state !== undefined && { verifyState: s.verification.state }),
        files: (s.files ?? []).map((f) => ({ filename: f.filename, cryptMode: f['crypt-mode'] })),
      }))
      .sort((a, b) => a.time - b.time);
  }

  async openReader(dir: BackupDir): Promise<SyncReader> {
    const session: ProtocolSession = await openSnapshotSession(
      {
        target: this.api.target,
        policy: this.api.policy,
        credentials: this.api.credentials,
        store: this.store,
        ns: dir.group.ns.name,
        backupType: dir.group.type,
        backupId: dir.group.id,
        backupTime: dir.time,
      },
      READER_PATH,
      READER_PROTOCOL_ID,
    );
    return {
      file: async (name) => {
        try {
          return await session.request('GET', 'download', { 'file-name': name });
        } catch (err) {
          // Stowage answers 404, PBS 400 "open file ... failed"
          if (
            isStowageError(err) &&
            (err.status === 404 || (err.status === 400 && /open file .* failed/.test(err.message)))
          )
            return undefined;
          throw err;
        }
      },
      chunk: (digest) => session.request('GET', 'chunk', { digest: digest.toString('hex') }),
      close: () => session.close(),
    };
  }
}
