/**
 * Push: copy the snapshots of a local datastore into a remote's, through the remote's API and
 * backup protocol, as PBS 4's `src/server/push.rs` does:
 *
 * - namespaces: the local namespace and those below it (to `max-depth`) map onto the remote
 *   namespace; missing remote namespaces are created through the remote's API;
 * - groups: those passing the group filters; snapshots newer than the remote's newest of the group
 *   (a remote snapshot cannot be changed through the backup protocol), limited to `transfer-last`;
 * - each snapshot is one backup session on the remote: blobs uploaded as stored, each index
 *   rebuilt on the remote chunk by chunk — a chunk the remote's previous snapshot of the group has
 *   (its index downloaded through `previous`, which makes the remote accept the digest) or that
 *   was sent in this session is only appended; others are uploaded as the stored, already
 *   compressed blobs — and the local manifest uploaded last, then `finish`. A session that fails
 *   is dropped, and the remote removes its unfinished snapshot;
 * - `verified-only` / `encrypted-only` (snapshot-filter.ts): local snapshots not verified ok, or
 *   not wholly encrypted, are not pushed (and count as vanished for `remove-vanished`, as in PBS);
 * - `remove-vanished`: remote snapshots (not protected) the local group no longer has are
 *   forgotten through the remote's API.
 *
 * The remote decides what the remote user may do (owner check, privileges, its maintenance
 * mode): its refusals are logged with its own message. The caller admits the local store as read.
 */
import { BACKUP_PATH, BACKUP_PROTOCOL_ID } from '../api-types/protocol.js';
import { openSnapshotSession, type ApiClient, type ProtocolSession } from '../client/connection.js';
import {
  BackupGroup,
  BackupNamespace,
  CLIENT_LOG_BLOB_NAME,
  MANIFEST_BLOB_NAME,
  decodeDynamicIndex,
  decodeFixedIndex,
  decodeManifest,
  type BackupDir,
  type ChunkIndexReader,
  type ReadonlyDatastore,
} from '../datastore/index.js';
import { ERR_SYNC_FAILED, ERR_SYNC_SOURCE_MISSING, ERR_TASK_ABORTED, isStowageError } from '../errors.js';
import { groupPasses, type GroupFilter } from './group-filter.js';
import { listLocalSnapshots } from './local-source.js';
import { syncGroups } from './group-workers.js';
import { selectListed, excludedByManifest, FILTERED_OUT, type SnapshotFlags } from './snapshot-filter.js';
import type { RateLimiter } from '../sys/rate-limiter.js';

export interface PushOptions extends SnapshotFlags {
  /** Local namespace to push from. */
  ns: BackupNamespace;
  /** Remote namespace to push into. */
  remoteNs: BackupNamespace;
  maxDepth?: number;
  groupFilter: readonly GroupFilter[];
  transferLast?: number;
  removeVanished: boolean;
  /** Which local groups the caller may push (PBS: all with Datastore.Read, own ones with Backup). */
  mayPush?(group: BackupGroup): boolean;
  log(line: string): void;
  signal?: AbortSignal;
  /** `rate-out`/`burst-out`: the chunk uploads' pace. */
  rateLimit?: RateLimiter;
  /** Groups pushed at once (PBS `worker-threads`; 1 by default). */
  workerThreads?: number;
}

export interface PushStats {
  snapshots: number;
  /** Chunks uploaded and their encoded bytes. */
  chunks: number;
  bytes: number;
  /** Chunks only appended (the remote had them). */
  reusedChunks: number;
  removedSnapshots: number;
  errors: number;
}

/** How many chunk digests go into one append request. */
const APPEND_BATCH = 512;

interface RemoteSnapshot {
  'backup-time': number;
  protected?: boolean;
  size?: number;
}

function throwIfAborted(signal: AbortSignal | undefined): void {
  if (signal?.aborted) {
    throw signal.reason instanceof Error ? signal.reason : ERR_TASK_ABORTED();
  }
}

function mapNamespace(
  local: BackupNamespace,
  ns: BackupNamespace,
  remoteNs: BackupNamespace,
): BackupNamespace {
  return BackupNamespace.fromComponents([...remoteNs.components, ...local.components.slice(ns.depth)]);
}

/** The remote datastore a push writes into: its API and protocol endpoint. */
export interface PushTarget {
  api: ApiClient;
  remoteName: string;
  store: string;
}

export async function pushStore(
  source: ReadonlyDatastore,
  target: PushTarget,
  opts: PushOptions,
): Promise<PushStats> {
  const stats: PushStats = {
    snapshots: 0,
    chunks: 0,
    bytes: 0,
    reusedChunks: 0,
    removedSnapshots: 0,
    errors: 0,
  };
  const base = `/admin/datastore/${encodeURIComponent(target.store)}`;
  const remoteNamespaces = new Set(
    (await target.api.call<Array<{ ns: string }>>('GET', `${base}/namespace`)).map((n) => n.ns),
  );
  for (const ns of source.listNamespaces(opts.ns, opts.maxDepth)) {
    throwIfAborted(opts.signal);
    const remoteNs = mapNamespace(ns, opts.ns, opts.remoteNs);
    opts.log('----');
    opts.log(
      `Syncing datastore '${source.name}'${ns.isRoot() ? '' : `, namespace '${ns.name}'`} into remote ` +
        `'${target.remoteName}' datastore '${target.store}'${remoteNs.isRoot() ? '' : `, namespace '${remoteNs.name}'`}`,
    );
    try {
      for (let depth = 1; depth <= remoteNs.depth; depth++) {
        const level = BackupNamespace.fromComponents(remoteNs.components.slice(0, depth));
        if (remoteNamespaces.has(level.name)) continue;
        await target.api.call('POST', `${base}/namespace`, {
          name: level.components.at(-1),
          ...(depth > 1 && { parent: level.parent().name }),
        });
        remoteNamespaces.add(level.name);
        opts.log(`Successfully created new namespace ${level.name} on remote`);
      }
    } catch (err) {
      opts.log(`Cannot sync into namespace '${remoteNs.name}' of the remote - ${(err as Error).message}`);
      stats.errors++;
      continue;
    }
    const all = source.listGroups(ns);
    const groups = all
      .filter((g) => groupPasses(opts.groupFilter, g) && (opts.mayPush?.(g) ?? true))
      .sort(BackupGroup.compare);
    opts.log(
      `found ${groups.length} groups to sync${opts.groupFilter.length ? ` (out of ${all.length} total)` : ''}`,
    );
    await syncGroups(groups, opts.workerThreads ?? 1, opts.log, async (group, log) => {
      throwIfAborted(opts.signal);
      try {
        const remoteGroup = new BackupGroup(remoteNs, group.type, group.id);
        await pushGroup(source, target, group, remoteGroup, { ...opts, log }, stats);
      } catch (err) {
        if (opts.signal?.aborted) throw err;
        log(`Group '${group}' failed to sync to remote - ${(err as Error).message}`);
        stats.errors++;
      }
    });
  }
  opts.log(
    `Summary: ${stats.snapshots} snapshot(s) pushed, ${stats.chunks} chunk(s) uploaded (${stats.bytes} bytes), ` +
      `${stats.reusedChunks} chunk(s) already on the remote` +
      (opts.removeVanished ? `, ${stats.removedSnapshots} vanished snapshot(s) removed from the remote` : ''),
  );
  if (stats.errors > 0) throw ERR_SYNC_FAILED();
  return stats;
}

async function pushGroup(
  source: ReadonlyDatastore,
  target: PushTarget,
  group: BackupGroup,
  remoteGroup: BackupGroup,
  opts: PushOptions,
  stats: PushStats,
): Promise<void> {
  const base = `/admin/datastore/${encodeURIComponent(target.store)}`;
  const nsParam = remoteGroup.ns.isRoot() ? {} : { ns: remoteGroup.ns.name };
  let remote: RemoteSnapshot[];
  try {
    remote = await target.api.call<RemoteSnapshot[]>('GET', `${base}/snapshots`, {
      ...nsParam,
      'backup-type': group.type,
      'backup-id': group.id,
    });
  } catch (err) {
    if (!(isStowageError(err) && err.status === 404)) throw err;
    remote = []; // the group does not exist on the remote yet
  }
  const lastRemote = Math.max(-Infinity, ...remote.map((s) => s['backup-time']));
  const listed = listLocalSnapshots(source, group);
  const local = selectListed(listed, opts, `${group}`, opts.log);
  const cutoff = opts.transferLast !== undefined ? Math.max(0, local.length - opts.transferLast) : 0;
  let already = 0;
  let beyond = 0;
  const todo = local.filter((s, pos) => {
    if (s.time <= lastRemote) {
      already++;
      return false;
    }
    if (pos < cutoff) {
      beyond++;
      return false;
    }
    return true;
  });
  if (already > 0) opts.log(`${group}: skipped: ${already} snapshot(s) - already on the remote or older`);
  if (beyond > 0) opts.log(`${group}: skipped: ${beyond} snapshot(s) - due to transfer-last`);
  for (const s of todo) {
    throwIfAborted(opts.signal);
    const dir = group.snapshot(s.time);
    opts.log(`${dir}: start sync`);
    if (!(await pushSnapshot(source, target, dir, remoteGroup.snapshot(s.time), opts, stats))) continue;
    stats.snapshots++;
    opts.log(`${dir}: sync done`);
  }
  if (opts.removeVanished) {
    // what the flags leave out is not there for the remote, as in PBS
    const present = new Set([...listed.filter((s) => s.inProgress), ...local].map((s) => s.time));
    for (const r of remote) {
      if (present.has(r['backup-time'])) continue;
      const name = `${remoteGroup.snapshot(r['backup-time'])}`;
      if (r.protected) {
        opts.log(`Kept protected snapshot ${name} on remote`);
        continue;
      }
      await target.api.call('DELETE', `${base}/snapshots`, {
        ...nsParam,
        'backup-type': group.type,
        'backup-id': group.id,
        'backup-time': r['backup-time'],
      });
      stats.removedSnapshots++;
      opts.log(`Removed vanished snapshot ${name} from remote`);
    }
  }
}

async function pushSnapshot(
  source: ReadonlyDatastore,
  target: PushTarget,
  dir: BackupDir,
  remoteDir: BackupDir,
  opts: PushOptions,
  stats: PushStats,
): Promise<boolean> {
  const lock = await source.locks.tryLockSnapshot(dir, 'snapshot is being pushed', { shared: true });
  let session: ProtocolSession | undefined;
  let finished = false;
  try {
    const reader = source.openSnapshotReader(dir);
    const manifestBlob = reader.readFile(MANIFEST_BLOB_NAME);
    if (!manifestBlob) throw ERR_SYNC_SOURCE_MISSING(`${dir}: snapshot has no manifest`);
    const manifest = decodeManifest(manifestBlob, `${dir}: manifest`);
    if (excludedByManifest(manifest, opts)) {
      opts.log(`${dir}: ${FILTERED_OUT}`);
      return false;
    }
    session = await openSnapshotSession(
      {
        target: target.api.target,
        policy: target.api.policy,
        credentials: target.api.credentials,
        store: target.store,
        ns: remoteDir.group.ns.name,
        backupType: remoteDir.group.type,
        backupId: remoteDir.group.id,
        backupTime: remoteDir.time,
      },
      BACKUP_PATH,
      BACKUP_PROTOCOL_ID,
    );
    const previousTime = await session.json<number | null>('GET', 'previous_backup_time');
    const previous =
      previousTime === null
        ? undefined
        : decodeManifest(
            await session.request('GET', 'previous', { 'archive-name': MANIFEST_BLOB_NAME }),
            'previous manifest on the remote',
          );
    // chunks the remote will accept by digest alone
    const known = new Set<string>();
    for (const entry of manifest.files) {
      throwIfAborted(opts.signal);
      const raw = reader.readFile(entry.filename);
      if (!raw) throw ERR_SYNC_SOURCE_MISSING(`${dir}/${entry.filename} does not exist, aborting upload.`);
      if (entry.filename.endsWith('.blob')) {
        await session.request(
          'POST',
          'blob',
          { 'file-name': entry.filename, 'encoded-size': raw.length },
          raw,
        );
        opts.log(`${dir}: uploaded ${entry.filename} (${raw.length} bytes)`);
        continue;
      }
      if (previous?.files.some((f) => f.filename === entry.filename)) {
        const prev = await session.request('GET', 'previous', { 'archive-name': entry.filename });
        for (const d of openIndex(entry.filename, prev).digests()) known.add(d.toString('hex'));
      }
      await pushIndex(source, session, entry.filename, openIndex(entry.filename, raw), known, opts, stats);
    }
    const log = reader.readFile(CLIENT_LOG_BLOB_NAME);
    if (log)
      await session.request(
        'POST',
        'blob',
        { 'file-name': CLIENT_LOG_BLOB_NAME, 'encoded-size': log.length },
        log,
      );
    await session.request(
      'POST',
      'blob',
      { 'file-name': MANIFEST_BLOB_NAME, 'encoded-size': manifestBlob.length },
      manifestBlob,
    );
    await session.json('POST', 'finish');
    finished = true;
    await session.close();
    return true;
  } finally {
    if (session && !finished) session.destroy(); // the remote removes the unfinished snapshot
    lock.release();
  }
}

function openIndex(name: string, raw: Buffer): ChunkIndexReader {
  return name.endsWith('.didx')
    ? decodeDynamicIndex(raw, { what: name, verifyCsum: true })
    : decodeFixedIndex(raw, { what: name, verifyCsum: true });
}

async function pushIndex(
  source: ReadonlyDatastore,
  session: ProtocolSession,
  name: string,
  index: ChunkIndexReader,
  known: Set<string>,
  opts: PushOptions,
  stats: PushStats,
): Promise<void> {
  const dynamic = index.kind === 'dynamic';
  const wid = await session.json<number>(
    'POST',
    dynamic ? 'dynamic_index' : 'fixed_index',
    dynamic ? { 'archive-name': name } : { 'archive-name': name, size: index.totalSize },
  );
  let digests: string[] = [];
  let offsets: number[] = [];
  const flush = async () => {
    if (digests.length === 0) return;
    await session.json(
      'PUT',
      dynamic ? 'dynamic_index' : 'fixed_index',
      {},
      {
        wid,
        'digest-list': digests,
        'offset-list': offsets,
      },
    );
    digests = [];
    offsets = [];
  };
  let uploaded = 0;
  let bytes = 0;
  for (let i = 0; i < index.count; i++) {
    throwIfAborted(opts.signal);
    const digest = index.digest(i);
    const hex = digest.toString('hex');
    const { start, end } = index.chunkRange(i);
    if (known.has(hex)) {
      stats.reusedChunks++;
    } else {
      const blob = await source.chunks.load(digest);
      await session.request(
        'POST',
        dynamic ? 'dynamic_chunk' : 'fixed_chunk',
        { wid, digest: hex, size: end - start, 'encoded-size': blob.length },
        blob,
      );
      known.add(hex);
      uploaded++;
      bytes += blob.length;
      await opts.rateLimit?.consume(blob.length, opts.signal);
    }
    digests.push(hex);
    offsets.push(start); // the protocol's offset of a chunk is where it starts, in both index kinds
    if (digests.length >= APPEND_BATCH) await flush();
  }
  await flush();
  await session.json('POST', dynamic ? 'dynamic_close' : 'fixed_close', {
    wid,
    'chunk-count': index.count,
    size: index.totalSize,
    csum: index.csum.toString('hex'),
  });
  stats.chunks += uploaded;
  stats.bytes += bytes;
  opts.log(
    `sync archive ${name}: uploaded ${uploaded} chunk(s), ${bytes} bytes; ${index.count - uploaded} already on the remote`,
  );
}
