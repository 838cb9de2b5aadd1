/**
 * Opening a reader session on the snapshot a command names (`type/id/time`, or `type/id` for the
 * group's latest finished snapshot): shared by `restore` and `catalog`.
 */
import {
  backupTimeFromString,
  parseBackupType,
  validateBackupId,
  type BackupType,
} from '../../api-types/names.js';
import { BadRequestError, NotFoundError } from '../../errors.js';
import { ApiClient } from '../../client/connection.js';
import { BackupReader } from '../../client/backup-reader.js';
import type { ChunkPool } from '../../client/chunk-pool.js';
import type { Credentials } from '../../client/connection.js';
import type { ClientSession } from './session.js';

export interface SnapshotSpec {
  backupType: BackupType;
  backupId: string;
  /** Undefined: the latest finished snapshot of the group. */
  backupTime?: number;
}

export function parseSnapshotSpec(spec: string): SnapshotSpec {
  const parts = spec.split('/');
  if (parts.length !== 2 && parts.length !== 3) {
    throw new BadRequestError(
      `unable to parse snapshot '${spec}' (expected type/id/YYYY-MM-DDTHH:MM:SSZ or type/id)`,
    );
  }
  return {
    backupType: parseBackupType(parts[0], 'snapshot'),
    backupId: validateBackupId(parts[1], 'snapshot'),
    backupTime: parts[2] === undefined ? undefined : backupTimeFromString(parts[2], 'snapshot'),
  };
}

interface SnapshotListItem {
  'backup-type': string;
  'backup-id': string;
  'backup-time': number;
  files?: Array<{ filename: string; size?: number } | string>;
  size?: number;
  protected?: boolean;
  verification?: { state?: string };
}

/** The latest snapshot of a group that has a manifest (a finished backup). */
async function latestSnapshot(
  session: ClientSession,
  api: ApiClient,
  spec: SnapshotSpec,
  ns?: string,
): Promise<number> {
  const list = await api.call<SnapshotListItem[]>('GET', `/admin/datastore/${session.repo.store}/snapshots`, {
    ns,
    'backup-type': spec.backupType,
    'backup-id': spec.backupId,
  });
  const finished = list
    .filter((s) =>
      (s.files ?? []).some((f) => (typeof f === 'string' ? f : f.filename) === 'index.json.blob'),
    )
    .sort((a, b) => a['backup-time'] - b['backup-time']);
  const last = finished.at(-1);
  if (!last) throw new NotFoundError(`group ${spec.backupType}/${spec.backupId} has no finished snapshot`);
  return last['backup-time'];
}

/**
 * Run `fn` with a reader session on the snapshot `spec` names (the latest finished one of the
 * group when it has no time), closed in every exit path.
 */
export async function withSnapshotReader<T>(
  session: ClientSession,
  credentials: Credentials,
  spec: SnapshotSpec,
  ns: string | undefined,
  pool: ChunkPool,
  fn: (reader: BackupReader) => Promise<T>,
): Promise<T> {
  const api = new ApiClient(session.target, session.policy, credentials);
  const backupTime = spec.backupTime ?? (await latestSnapshot(session, api, spec, ns));
  const reader = await BackupReader.open(
    {
      target: session.target,
      policy: session.policy,
      credentials,
      store: session.repo.store,
      ns,
      backupType: spec.backupType,
      backupId: spec.backupId,
      backupTime,
    },
    pool,
  );
  try {
    return await fn(reader);
  } finally {
    await reader.close();
  }
}
