/**
 * Pull: copy the snapshots of a source datastore (remote or local, sync-source.ts) into a local
 * target, as PBS's `src/server/pull.rs` does:
 *
 * - namespaces: the source namespace and those below it (to `max-depth`) map onto the target
 *   namespace; missing target namespaces are created;
 * - groups: those passing the group filters, each created (or checked) with the job's owner under
 *   the group lock — a group owned by someone else is not synced ("owner check failed");
 * - snapshots: finished ones newer than the last one on the target, and the last one again
 *   (it may have got its client log or verify state since), limited to the newest
 *   `transfer-last`;
 * - files: indexes and blobs checked against the source manifest, chunks the target lacks
 *   downloaded and checked against their digest, chunks it has only marked (their atime, so a
 *   concurrent GC keeps them); the manifest is written last, as the source's bytes, so a snapshot
 *   is never visible before all its data is there. A new snapshot that fails half-way is removed
 *   again: nothing partial remains, and the next run starts it over;
 * - `verified-only` / `encrypted-only` (snapshot-filter.ts): snapshots not verified ok, or not
 *   wholly encrypted, are left out (and count as vanished for `remove-vanished`, as in PBS);
 * - `resync-corrupt`: a snapshot the target has but whose last verification failed (or whose
 *   manifest cannot be read) is synced again whatever its age, every file and every chunk the
 *   target lacks (a failed verification renamed its corrupt chunks away);
 * - `remove-vanished`: target snapshots and groups (of the owner, passing the filters) the source
 *   no longer has are deleted; protected snapshots stay. So are the namespaces below the target
 *   namespace (within `max-depth`) that no source namespace maps onto, with everything in them,
 *   deepest first, as PBS's `check_and_remove_vanished_ns`: only those the owner sees (Backup or
 *   Audit) and may remove (Modify on the parent); one holding protected snapshots stays.
 *
 * The caller admits the target as an ingest operation (kind `sync`) and a local source as read.
 */
import { createHash } from 'node:crypto';
import {
  CorruptDataError,
  ERR_SYNC_FAILED,
  ERR_SYNC_OWNER_CHECK,
  ERR_SYNC_SOURCE_MISSING,
  ERR_TASK_ABORTED,
} from '../errors.js';
import {
  BackupGroup,
  BackupNamespace,
  CLIENT_LOG_BLOB_NAME,
  MANIFEST_BLOB_NAME,
  checkChunkBlob,
  decodeDynamicIndex,
  decodeFixedIndex,
  decodeManifest,
  type BackupDir,
  type BackupManifest,
  type ChunkIndexReader,
  type SnapshotWriter,
  type WritableDatastore,
} from '../datastore/index.js';
import { groupPasses, type GroupFilter } from './group-filter.js';
import { selectListed, excludedByManifest, FILTERED_OUT, type SnapshotFlags } from './snapshot-filter.js';
import type { RateLimiter } from '../sys/rate-limiter.js';
import type { SyncReader, SyncSource } from './sync-source.js';
import type { NamespaceRights } from './sync-rights.js';
import { syncGroups } from './group-workers.js';

export interface PullOptions extends SnapshotFlags {
  /** Target namespace (root when absent). */
  ns: BackupNamespace;
  /** Source namespace (root when absent). */
  sourceNs: BackupNamespace;
  /** Levels below the source namespace to sync (all when undefined; 0: only it). */
  maxDepth?: number;
  /** Owner of the groups the sync creates, and the only owner whose groups it writes to. */
  owner: string;
  removeVanished: boolean;
  groupFilter: readonly GroupFilter[];
  /** Only the newest N snapshots of each group (and the last synced one). */
  transferLast?: number;
  log(line: string): void;
  signal?: AbortSignal;
  /** The sync owner's rights on target namespaces (creating, removing vanished ones); all without. */
  namespaceRights?: NamespaceRights;
  /** `rate-in`/`burst-in`: the chunk downloads' pace. */
  rateLimit?: RateLimiter;
  /** Sync again the target's snapshots whose last verification failed. */
  resyncCorrupt?: boolean;
  /** Groups synced at once (PBS `worker-threads`; 1 by default). */
  workerThreads?: number;
}

export interface PullStats {
  snapshots: number;
  /** Chunks downloaded, and their encoded bytes. */
  chunks: number;
  bytes: number;
  /** Chunks the target already had. */
  reusedChunks: number;
  removedSnapshots: number;
  removedGroups: number;
  removedNamespaces: number;
  /** Groups that failed (the sync goes on with the others and fails at the end). */
  errors: number;
}

const emptyStats = (): PullStats => ({
  snapshots: 0,
  chunks: 0,
  bytes: 0,
  reusedChunks: 0,
  removedSnapshots: 0,
  removedGroups: 0,
  removedNamespaces: 0,
  errors: 0,
});

const sha256Hex = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');

function describeNs(store: string, ns: BackupNamespace): string {
  return ns.isRoot()
    ? `datastore '${store}', root namespace`
    : `datastore '${store}', namespace '${ns.name}'`;
}

/** Map a source namespace below `sourceNs` onto the target below `ns`. */
function mapNamespace(src: BackupNamespace, sourceNs: BackupNamespace, ns: BackupNamespace): BackupNamespace {
  return BackupNamespace.fromComponents([...ns.components, ...src.components.slice(sourceNs.depth)]);
}

function throwIfAborted(signal: AbortSignal | undefined): void {
  if (signal?.aborted) throw signal.reason instanceof Error ? signal.reason : ERR_TASK_ABORTED();
}

/** Pull everything `opts` selects from `source` into `target`. Fails at the end when a group failed. */
export async function pullStore(
  source: SyncSource,
  target: WritableDatastore,
  opts: PullOptions,
): Promise<PullStats> {
  const stats = emptyStats();
  const namespaces = await source.listNamespaces(opts.sourceNs, opts.maxDepth);
  if (namespaces.length === 0) {
    throw ERR_SYNC_SOURCE_MISSING(
      `source namespace '${opts.sourceNs.name}' does not exist on ${source.description}`,
    );
  }
  const synced = new Set<string>();
  for (const srcNs of namespaces) {
    throwIfAborted(opts.signal);
    const targetNs = mapNamespace(srcNs, opts.sourceNs, opts.ns);
    synced.add(targetNs.name);
    opts.log('----');
    opts.log(
      `Syncing ${source.description}${srcNs.isRoot() ? '' : `, namespace '${srcNs.name}'`} into ${describeNs(target.name, targetNs)}`,
    );
    if (!target.namespaceExists(targetNs)) {
      try {
        for (let depth = 1; depth <= targetNs.depth; depth++) {
          const level = BackupNamespace.fromComponents(targetNs.components.slice(0, depth));
          if (target.namespaceExists(level)) continue;
          opts.namespaceRights?.checkModify(level);
          await target.createNamespace(level);
          opts.log(`Created namespace ${level.name}`);
        }
      } catch (err) {
        opts.log(`Cannot sync into ${describeNs(target.name, targetNs)} - ${(err as Error).message}`);
        stats.errors++;
        continue;
      }
    }
    await pullNamespace(source, target, srcNs, targetNs, opts, stats);
  }
  if (opts.removeVanished) await removeVanishedNamespaces(target, synced, opts, stats);
  opts.log(
    `Summary: ${stats.snapshots} snapshot(s) synced, ${stats.chunks} chunk(s) downloaded ` +
      `(${stats.bytes} bytes), ${stats.reusedChunks} chunk(s) already present` +
      (opts.removeVanished
        ? `, ${stats.removedSnapshots} vanished snapshot(s), ${stats.removedGroups} group(s) and ` +
          `${stats.removedNamespaces} namespace(s) removed`
        : ''),
  );
  if (stats.errors > 0) throw ERR_SYNC_FAILED();
  return stats;
}

/**
 * PBS `check_and_remove_vanished_ns`: the target's namespaces below `opts.ns` (to `max-depth`)
 * that no source namespace was mapped onto, deepest first.
 */
async function removeVanishedNamespaces(
  target: WritableDatastore,
  synced: ReadonlySet<string>,
  opts: PullOptions,
  stats: PullStats,
): Promise<void> {
  if (!target.namespaceExists(opts.ns)) return;
  const local = target
    .listNamespaces(opts.ns, opts.maxDepth)
    .filter((ns) => !ns.isRoot() && !ns.equals(opts.ns) && !synced.has(ns.name))
    .filter((ns) => opts.namespaceRights?.sees(ns) ?? true)
    .sort((a, b) => b.name.length - a.name.length);
  for (const ns of local) {
    throwIfAborted(opts.signal);
    // a child removed before may have taken this one with it
    if (!target.namespaceExists(ns)) continue;
    try {
      try {
        opts.namespaceRights?.checkModify(ns);
      } catch (err) {
        throw new Error(`Removing ${ns.name} not allowed - ${(err as Error).message}`);
      }
      const { removedAll } = await target.deleteNamespace(ns, { deleteGroups: true });
      if (removedAll) {
        opts.log(`Removed namespace ${ns.name}`);
        stats.removedNamespaces++;
      } else opts.log(`Did not remove namespace ${ns.name} - protected snapshots remain`);
    } catch (err) {
      opts.log(`Failed to remove namespace ${ns.name} - ${(err as Error).message}`);
      stats.errors++;
    }
  }
}

async function pullNamespace(
  source: SyncSource,
  target: WritableDatastore,
  srcNs: BackupNamespace,
  targetNs: BackupNamespace,
  opts: PullOptions,
  stats: PullStats,
): Promise<void> {
  const all = await source.listGroups(srcNs);
  const groups = all.filter((g) => groupPasses(opts.groupFilter, g)).sort(BackupGroup.compare);
  opts.log(
    opts.groupFilter.length > 0
      ? `found ${groups.length} groups to sync (out of ${all.length} total)`
      : `found ${groups.length} groups to sync`,
  );
  await syncGroups(groups, opts.workerThreads ?? 1, opts.log, async (srcGroup, log) => {
    throwIfAborted(opts.signal);
    const group = new BackupGroup(targetNs, srcGroup.type, srcGroup.id);
    try {
      await pullGroup(source, target, srcGroup, group, { ...opts, log }, stats);
    } catch (err) {
      if (opts.signal?.aborted) throw err;
      log(`sync group ${group} failed - ${(err as Error).message}`);
      stats.errors++;
    }
  });
  if (opts.removeVanished) {
    const present = new Set(groups.map((g) => `${g.type}/${g.id}`));
    for (const local of target.listGroups(targetNs)) {
      if (present.has(`${local.type}/${local.id}`) || !groupPasses(opts.groupFilter, local)) continue;
      if (target.getOwner(local) !== opts.owner) continue;
      opts.log(`delete vanished group '${local}'`);
      try {
        const res = await target.deleteGroup(local);
        if (res.protectedSnapshots > 0) opts.log(`kept some protected snapshots of group '${local}'`);
        else stats.removedGroups++;
      } catch (err) {
        opts.log(`could not delete vanished group '${local}' - ${(err as Error).message}`);
        stats.errors++;
      }
    }
  }
}

async function pullGroup(
  source: SyncSource,
  target: WritableDatastore,
  srcGroup: BackupGroup,
  group: BackupGroup,
  opts: PullOptions,
  stats: PullStats,
): Promise<void> {
  const { owner, lock } = await target.createLockedBackupGroup(group, opts.owner);
  try {
    if (owner !== opts.owner) throw ERR_SYNC_OWNER_CHECK(opts.owner, owner);
    const listed = await source.listSnapshots(srcGroup);
    for (const s of listed.filter((x) => x.inProgress)) {
      opts.log(`skipping snapshot ${srcGroup.snapshot(s.time)} - in-progress backup`);
    }
    const times = selectListed(listed, opts, `${group}`, opts.log)
      .map((s) => s.time)
      .sort((a, b) => a - b);
    const localSnapshots = target.listSnapshots(group).filter((s) => s.finished);
    const lastLocal = localSnapshots.at(-1)?.dir.time;
    const corrupt = new Set<number>();
    if (opts.resyncCorrupt) {
      const have = new Map(localSnapshots.map((s) => [s.dir.time, s.dir]));
      for (const t of times) {
        const dir = have.get(t);
        if (dir && verifyFailed(target, dir)) corrupt.add(t);
      }
    }
    const cutoff = opts.transferLast !== undefined ? Math.max(0, times.length - opts.transferLast) : 0;
    let alreadySynced = 0;
    let beyondLast = 0;
    const todo = times.filter((t, pos) => {
      if (corrupt.has(t)) return true;
      // the last synced snapshot is synced again: it may have got its log or verify state since
      if (lastLocal !== undefined && t < lastLocal) {
        alreadySynced++;
        return false;
      }
      if (pos < cutoff && t !== lastLocal) {
        beyondLast++;
        return false;
      }
      return true;
    });
    if (alreadySynced > 0)
      opts.log(`${group}: skipped: ${alreadySynced} snapshot(s) - older than the newest local snapshot`);
    if (beyondLast > 0) opts.log(`${group}: skipped: ${beyondLast} snapshot(s) - due to transfer-last`);
    // chunks seen in this group are neither downloaded nor marked twice
    const seen = new Set<string>();
    for (const time of todo) {
      throwIfAborted(opts.signal);
      const dir = group.snapshot(time);
      await pullSnapshot(source, target, srcGroup.snapshot(time), dir, corrupt.has(time), seen, opts, stats);
    }
    if (opts.removeVanished) {
      const present = new Set(times);
      for (const local of target.listSnapshots(group)) {
        if (present.has(local.dir.time) || !local.finished) continue;
        if (target.getProtected(local.dir)) {
          opts.log(`${group}: don't delete vanished snapshot ${local.dir} (protected)`);
          continue;
        }
        opts.log(`delete vanished snapshot ${local.dir}`);
        await target.deleteSnapshot(local.dir);
        stats.removedSnapshots++;
      }
    }
  } finally {
    lock.release();
  }
}

/**
 * PBS's test for `resync-corrupt`: the snapshot's last verification failed, or its manifest
 * cannot be read ("probably better if we resync").
 */
function verifyFailed(target: WritableDatastore, dir: BackupDir): boolean {
  try {
    return target.loadManifest(dir).unprotected.verify_state?.state === 'failed';
  } catch {
    return true;
  }
}

async function pullSnapshot(
  source: SyncSource,
  target: WritableDatastore,
  srcDir: BackupDir,
  dir: BackupDir,
  corrupt: boolean,
  seen: Set<string>,
  opts: PullOptions,
  stats: PullStats,
): Promise<void> {
  const prefix = `${dir}`;
  const reader = await source.openReader(srcDir);
  try {
    const manifestBlob = await reader.file(MANIFEST_BLOB_NAME);
    if (!manifestBlob) {
      opts.log(`${prefix}: skipped because vanished since start of sync`);
      return;
    }
    const manifest = decodeManifest(manifestBlob, `${prefix}: source manifest`);
    const exists = target.listSnapshots(dir.group).some((s) => s.dir.time === dir.time);
    if (!exists) {
      if (excludedByManifest(manifest, opts)) {
        opts.log(`${prefix}: ${FILTERED_OUT}`);
        return;
      }
      opts.log(`${prefix}: start sync`);
      const { writer, lock } = await target.createSnapshotWriter(dir);
      try {
        await pullFiles(reader, target, writer, manifest, undefined, seen, prefix, opts, stats);
        await fetchClientLog(reader, writer, undefined, opts);
        await writer.finishWithManifestBlob(manifestBlob);
      } catch (err) {
        writer.abort(); // nothing half-synced stays; the next run starts this snapshot over
        throw err;
      } finally {
        lock.release();
      }
      stats.snapshots++;
      opts.log(`${prefix}: sync done`);
      return;
    }
    const lock = await target.locks.tryLockSnapshot(dir, 'snapshot is being re-synced');
    try {
      const local = target.openSnapshotReader(dir);
      const writer = target.openSnapshotWriter(dir);
      const localManifest = corrupt ? undefined : local.readFile(MANIFEST_BLOB_NAME);
      if (localManifest?.equals(manifestBlob)) {
        await fetchClientLog(reader, writer, local, opts);
        opts.log(`${prefix}: no data changes`);
        return;
      }
      if (excludedByManifest(manifest, opts)) {
        opts.log(`${prefix}: ${FILTERED_OUT}`);
        return;
      }
      opts.log(corrupt ? `re-sync snapshot ${prefix} due to corruption` : `re-sync snapshot ${prefix}`);
      // a corrupt snapshot's files are all fetched again, whatever they look like here
      await pullFiles(
        reader,
        target,
        writer,
        manifest,
        corrupt ? undefined : local,
        seen,
        prefix,
        opts,
        stats,
      );
      await writer.finishWithManifestBlob(manifestBlob);
      await fetchClientLog(reader, writer, local, opts);
      stats.snapshots++;
    } finally {
      lock.release();
    }
  } finally {
    await reader.close();
  }
}

/** The client log is not in the manifest (it is uploaded after it); copy it when the source has it. */
async function fetchClientLog(
  reader: SyncReader,
  writer: SnapshotWriter,
  local: { readFile(name: string): Buffer | undefined } | undefined,
  opts: PullOptions,
): Promise<void> {
  if (local?.readFile(CLIENT_LOG_BLOB_NAME)) return;
  const log = await reader.file(CLIENT_LOG_BLOB_NAME);
  if (!log) return;
  writer.addBlob(CLIENT_LOG_BLOB_NAME, log);
  opts.log(`got backup log file ${CLIENT_LOG_BLOB_NAME}`);
}

async function pullFiles(
  reader: SyncReader,
  target: WritableDatastore,
  writer: SnapshotWriter,
  manifest: BackupManifest,
  local: { readFile(name: string): Buffer | undefined } | undefined,
  seen: Set<string>,
  prefix: string,
  opts: PullOptions,
  stats: PullStats,
): Promise<void> {
  for (const entry of manifest.files) {
    throwIfAborted(opts.signal);
    const isIndex = entry.filename.endsWith('.didx') || entry.filename.endsWith('.fidx');
    if (local) {
      // a file already there with the manifest's checksum is kept (a re-sync of an unchanged file)
      const have = local.readFile(entry.filename);
      if (have && fileMatches(entry.filename, have, entry.csum, entry.size)) continue;
      if (have) opts.log(`${prefix}: detected changed file ${entry.filename}`);
    }
    const raw = await reader.file(entry.filename);
    if (!raw) throw ERR_SYNC_SOURCE_MISSING(`${prefix}/${entry.filename}: archive missing on source`);
    if (!fileMatches(entry.filename, raw, entry.csum, entry.size)) {
      throw new CorruptDataError(`${prefix}: wrong checksum or size for file '${entry.filename}'`);
    }
    if (isIndex) {
      opts.log(`sync archive ${entry.filename}`);
      const index = openIndex(entry.filename, raw);
      await pullChunks(reader, target, index, seen, opts, stats);
    } else {
      opts.log(`sync blob ${entry.filename}`);
    }
    writer.addBlob(entry.filename, raw);
  }
}

function openIndex(name: string, raw: Buffer): ChunkIndexReader {
  return name.endsWith('.didx')
    ? decodeDynamicIndex(raw, { what: name, verifyCsum: true })
    : decodeFixedIndex(raw, { what: name, verifyCsum: true });
}

/** PBS `verify_file`: an index's checksum and data size, a blob's SHA-256 and length. */
function fileMatches(name: string, raw: Buffer, csum: string, size: number): boolean {
  if (name.endsWith('.didx') || name.endsWith('.fidx')) {
    try {
      const index = openIndex(name, raw);
      return index.csum.toString('hex') === csum && index.totalSize === size;
    } catch {
      return false;
    }
  }
  return raw.length === size && sha256Hex(raw) === csum;
}

const PARALLEL_CHUNKS = 8;

async function pullChunks(
  reader: SyncReader,
  target: WritableDatastore,
  index: ChunkIndexReader,
  seen: Set<string>,
  opts: PullOptions,
  stats: PullStats,
): Promise<void> {
  const todo: Array<{ digest: Buffer; size: number }> = [];
  for (let i = 0; i < index.count; i++) {
    const digest = index.digest(i);
    const hex = digest.toString('hex');
    if (seen.has(hex)) continue;
    seen.add(hex);
    const { start, end } = index.chunkRange(i);
    todo.push({ digest: Buffer.from(digest), size: end - start });
  }
  let next = 0;
  let downloaded = 0;
  let bytes = 0;
  const started = Date.now();
  const worker = async () => {
    while (next < todo.length) {
      throwIfAborted(opts.signal);
      const { digest, size } = todo[next++]!;
      // present: marked so a concurrent GC keeps it (PBS `cond_touch_chunk`)
      if (await target.chunks.mark(digest)) {
        stats.reusedChunks++;
        continue;
      }
      const blob = await reader.chunk(digest);
      checkChunkBlob(digest, blob, { expectedSize: size });
      await target.chunks.insert(digest, blob);
      downloaded++;
      bytes += blob.length;
      await opts.rateLimit?.consume(blob.length, opts.signal);
    }
  };
  await Promise.all(Array.from({ length: Math.min(PARALLEL_CHUNKS, todo.length) }, worker));
  stats.chunks += downloaded;
  stats.bytes += bytes;
  const secs = Math.max(0.001, (Date.now() - started) / 1000);
  opts.log(
    `downloaded ${downloaded} chunk(s), ${bytes} bytes (${(bytes / 1048576 / secs).toFixed(2)} MiB/s); ` +
      `${todo.length - downloaded} already present`,
  );
}
