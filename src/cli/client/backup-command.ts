/**
 * `stowage-client backup SPEC... [--backup-type host] [--backup-id ID] [--backup-time EPOCH]
 *  [--ns NS] [--exclude GLOB]... [--dry-run] [--chunk-size KIB]`
 *
 * SPEC is `NAME.pxar:DIR` (a directory as a pxar archive, `NAME.pxar.didx`, with the snapshot's
 * file catalog `catalog.pcat1.didx`, as PBS's client writes them), `NAME.tar:DIR` (a directory as
 * a tar stream, `NAME.tar.didx`: incremental through the tree cache), `NAME.img:FILE` (an image
 * or block device, `NAME.img.fidx`), or `NAME.conf:FILE` / `NAME.log:FILE` (a small file as
 * `NAME.conf.blob`).
 */
import { createHash } from 'node:crypto';
import { closeSync, openSync, readFileSync, readSync, statSync } from 'node:fs';
import { homedir, hostname } from 'node:os';
import { Readable } from 'node:stream';
import { join, resolve } from 'node:path';
import type { Command } from 'commander';
import { BadRequestError, ERR_PREVIOUS_SNAPSHOT_CHANGED, NotFoundError } from '../../errors.js';
import {
  parseBackupType,
  validateBackupEpoch,
  validateBackupId,
  type BackupType,
} from '../../api-types/names.js';
import { CATALOG_ARCHIVE_NAME } from '../../api-types/archive-name.js';
import { BackupWriter, type TransferStats } from '../../client/backup-writer.js';
import { ChunkPool } from '../../client/chunk-pool.js';
import { DEFAULT_CHUNK_SIZE, validateChunkSize } from '../../client/chunker.js';
import { pxarStream, type ArchiveSpan } from '../../client/pxar-backup.js';
import {
  compileExcludes,
  measureTree,
  planTree,
  type TreeFingerprint,
  type TreePlan,
  WalkFingerprint,
} from '../../client/tar-archive.js';
import { CatalogWriter } from '../../pxar/catalog.js';
import { readArchiveXattrs, type ArchiveXattrs } from '../../pxar/create.js';
import type { DirectorySpan } from '../../client/directory-reuse.js';
import {
  encodeDirectories,
  encodeEntries,
  previousEntries,
  previousPxarRecords,
  TreeCache,
  type TreeCacheEntry,
  type TreeCacheKey,
} from '../../client/tree-cache.js';
import { RecordedStats } from '../../client/walk-stats.js';
import { formatBytes, formatRate, startProgress } from './progress.js';
import { openClientSession, type ClientSession } from './session.js';

export interface BackupSpec {
  /** Archive name on the server: `root.pxar.didx`, `root.tar.didx`, `disk.img.fidx`, `vm.conf.blob`. */
  archive: string;
  /** `pxar` and `tree` (tar) both archive a directory. */
  kind: 'pxar' | 'tree' | 'image' | 'blob';
  path: string;
}

const SPEC = /^([A-Za-z0-9_][A-Za-z0-9._-]*)\.(pxar|tar|img|conf|log):(.+)$/;

/** Parse one `NAME.EXT:PATH` argument. */
export function parseBackupSpec(arg: string): BackupSpec {
  const m = SPEC.exec(arg);
  if (!m) {
    throw new BadRequestError(
      `unable to parse backup specification '${arg}' (expected NAME.pxar:DIR, NAME.tar:DIR, NAME.img:FILE, NAME.conf:FILE or NAME.log:FILE)`,
    );
  }
  const [, name, ext, path] = m as unknown as [string, string, string, string];
  if (ext === 'pxar') return { archive: `${name}.pxar.didx`, kind: 'pxar', path: resolve(path) };
  if (ext === 'tar') return { archive: `${name}.tar.didx`, kind: 'tree', path: resolve(path) };
  if (ext === 'img') return { archive: `${name}.img.fidx`, kind: 'image', path: resolve(path) };
  return { archive: `${name}.${ext}.blob`, kind: 'blob', path: resolve(path) };
}

/** Size of a regular file or a block device (whose stat size is 0: read it from sysfs). */
export function imageSize(path: string): number {
  const st = statSync(path);
  if (st.isFile()) return st.size;
  if (st.isBlockDevice()) {
    const major = Math.floor(st.rdev / 256);
    const minor = st.rdev % 256;
    const sectors = Number(readFileSync(`/sys/dev/block/${major}:${minor}/size`, 'utf8').trim());
    return sectors * 512;
  }
  throw new BadRequestError(`'${path}' is neither a regular file nor a block device`);
}

async function* readImage(path: string, size: number): AsyncGenerator<Buffer> {
  const fd = openSync(path, 'r');
  try {
    const block = 4 * 1024 * 1024;
    for (let off = 0; off < size;) {
      const buf = Buffer.allocUnsafe(Math.min(block, size - off));
      const n = readSync(fd, buf, 0, buf.length, off);
      if (n === 0) break;
      off += n;
      yield n === buf.length ? buf : buf.subarray(0, n);
      await new Promise<void>((r) => setImmediate(r)); // let uploads progress between reads
    }
  } finally {
    closeSync(fd);
  }
}

interface BackupOptions {
  repository?: string;
  backupType: string;
  backupId?: string;
  backupTime?: string;
  ns?: string;
  exclude: string[];
  dryRun?: boolean;
  chunkSize?: string;
  outputFormat: string;
  treeCache: boolean;
  subsecondMtimes?: boolean;
}

interface ArchivePlan extends BackupSpec {
  size: number;
  /** For trees: the walk, with every entry's header and metadata key (read later, once). */
  tree?: TreePlan;
  /** For pxar trees (with the tree cache): the metadata walk's fingerprint, nanosecond mtimes. */
  fingerprint?: TreeFingerprint;
  /** And its lstats, for the pxar walk when the tree changed (one lstat per entry, not two). */
  stats?: RecordedStats;
  /** For pxar trees: the read of their extended attributes, once the tree is seen to have changed. */
  xattrs?: Promise<ArchiveXattrs>;
  /** When the walk that took `fingerprint` began (the tree cache's `walkedAtMs`). */
  walkedAtMs?: number;
}

/** `$XDG_CACHE_HOME/stowage/tree-cache`, or `~/.cache/stowage/tree-cache`. */
export function treeCacheDir(env: NodeJS.ProcessEnv = process.env): string {
  const base = env.XDG_CACHE_HOME || join(env.HOME || homedir(), '.cache');
  return join(base, 'stowage', 'tree-cache');
}

/**
 * The time to keep as a walk's start (the tree cache's `walkedAtMs`): a second early, as the
 * kernel's file times lag the clock by up to a tick.
 */
function walkStartMs(): number {
  return Date.now() - 1000;
}

/**
 * `treeCache`: the cache's entry for a pxar tree (archive name, path), if any. Without one there
 * is nothing to compare a fingerprint with: the archive's own walk computes it then.
 * `archiving`: false for a dry run (nothing is read that only the archive needs).
 */
async function plan(
  specs: BackupSpec[],
  exclude: string[],
  subsecondMtimes: boolean,
  treeCache: false | ((spec: BackupSpec) => TreeCacheEntry | undefined),
  archiving: boolean,
): Promise<ArchivePlan[]> {
  const seen = new Set<string>();
  const out: ArchivePlan[] = [];
  for (const s of specs) {
    if (seen.has(s.archive)) throw new BadRequestError(`archive '${s.archive}' given twice`);
    seen.add(s.archive);
    const st = statSync(s.path, { throwIfNoEntry: false });
    if (!st) throw new NotFoundError(`backup source '${s.path}' does not exist`);
    if (s.kind === 'pxar') {
      if (!st.isDirectory())
        throw new BadRequestError(`'${s.path}' is not a directory (NAME.pxar: wants a directory)`);
      // The size is known once archived (progress shows bytes). With the tree cache, a metadata
      // walk first: an unchanged tree's archive and catalog are the previous snapshot's.
      // getfattr reads the attributes in a process of its own (about a second per 100 000 files):
      // started as soon as the tree is seen to have changed (a ctime after the last walk's start)
      // or at once without a cache entry, it runs beside the metadata walk and the session's
      // start instead of after them. Not for a tree that turns out unchanged (nothing to encode).
      let xattrs: Promise<ArchiveXattrs> | undefined;
      const readXattrs = () => {
        if (!archiving || xattrs) return;
        xattrs = readArchiveXattrs(s.path);
        xattrs.catch(() => {}); // the pxar walk awaits it
      };
      let fingerprint: TreeFingerprint | undefined;
      let stats: RecordedStats | undefined;
      const cached = treeCache ? treeCache(s) : undefined;
      const walkedAtMs = walkStartMs();
      if (cached) {
        stats = new RecordedStats();
        if (cached.walkedAtMs === undefined) readXattrs();
        await measureTree(s.path, {
          exclude,
          subsecondMtimes: true,
          onFingerprint: (f) => (fingerprint = f),
          record: stats,
          changedSince:
            cached.walkedAtMs === undefined ? undefined : { ms: cached.walkedAtMs, onChanged: readXattrs },
        });
      } else readXattrs();
      out.push({ ...s, size: 0, fingerprint, stats, xattrs, walkedAtMs });
    } else if (s.kind === 'tree') {
      if (!st.isDirectory())
        throw new BadRequestError(`'${s.path}' is not a directory (NAME.tar: wants a directory)`);
      const tree = await planTree(s.path, {
        exclude,
        subsecondMtimes,
        onWarning: (m) => process.stderr.write(`warning: ${m}\n`),
      });
      out.push({ ...s, size: tree.size, tree });
    } else if (s.kind === 'image') out.push({ ...s, size: imageSize(s.path) });
    else {
      if (!st.isFile()) throw new BadRequestError(`'${s.path}' is not a file`);
      out.push({ ...s, size: st.size });
    }
  }
  return out;
}

/**
 * Bumped whenever the pxar archive of a given tree changes (encoder layout, catalog): tree cache
 * entries of earlier layouts are then never matched.
 * 2: extended attributes, POSIX ACLs and file capabilities are archived. Changing one of them
 * later changes the entry's ctime, which the tree's fingerprint holds (measureTree), so an
 * attribute-only change is noticed without reading any attribute.
 */
const PXAR_LAYOUT = 2;

/**
 * When every item's fingerprint is usable and equal to its tree cache entry's, and the previous
 * snapshot holds exactly the indexes those entries name, what to reuse per archive; else
 * undefined (then every pxar tree is encoded).
 */
async function unchangedPxarTrees(
  writer: BackupWriter,
  items: Array<{ key: TreeCacheKey; archive: string; fp?: TreeFingerprint }>,
  cache: TreeCache,
): Promise<Map<string, { csum: string; size: number }> | undefined> {
  const out = new Map<string, { csum: string; size: number }>();
  for (const { key, archive, fp } of items) {
    const cached = fp?.usable ? cache.lookup(key) : undefined;
    if (!cached || cached.fingerprint !== fp!.digest) return undefined;
    out.set(archive, { csum: cached.csum, size: cached.size });
  }
  const previous = await writer.previousManifest();
  for (const [archive, want] of out) {
    const f = previous?.files.find((p) => p.filename === archive);
    if (!f || f.csum !== want.csum || f.size !== want.size) return undefined;
  }
  return out;
}

function dedupRatio(total: TransferStats): string {
  return total.newBytes === 0 ? 'all data reused' : (total.bytes / total.newBytes).toFixed(2);
}

export function registerBackupCommand(program: Command): void {
  program
    .command('backup')
    .description(
      'create a backup: NAME.pxar:DIR, NAME.tar:DIR, NAME.img:FILE, NAME.conf:FILE ... (pxar trees come with a file catalog)',
    )
    .argument('<spec...>', 'what to back up')
    .option(
      '--repository <repo>',
      'repository [[user@realm[!token]@]host[:port]:]datastore (env STOWAGE_REPOSITORY)',
    )
    .option('--backup-type <type>', 'backup type: host, vm or ct', 'host')
    .option('--backup-id <id>', 'backup id (default: the host name)')
    .option('--backup-time <epoch>', 'backup time in seconds since the epoch (default: now)')
    .option('--ns <ns>', 'namespace, e.g. a/b')
    .option(
      '--exclude <glob>',
      'exclude paths matching GLOB (gitignore-like; repeatable)',
      (v: string, acc: string[]) => [...acc, v],
      [],
    )
    .option('--dry-run', 'show what would be backed up, upload nothing')
    .option(
      '--chunk-size <KiB>',
      'average chunk size of pxar and tar archives in KiB (power of two, 64..4096)',
    )
    .option('--output-format <format>', 'text or json', 'text')
    .option(
      '--subsecond-mtimes',
      'keep mtimes to the nanosecond in tar archives (a pax header per file: larger, and chunks differ from backups made without it)',
    )
    .option(
      '--no-tree-cache',
      'read every file even when no metadata (size, mtime, ctime, inode) changed since the last backup',
    )
    .action(async (args: string[], opts: BackupOptions) => {
      const specs = args.map(parseBackupSpec);
      const backupType: BackupType = parseBackupType(opts.backupType);
      const backupId = validateBackupId(opts.backupId ?? (hostname().split('.')[0] || 'localhost'));
      const backupTime = validateBackupEpoch(
        opts.backupTime === undefined ? Math.floor(Date.now() / 1000) : Number(opts.backupTime),
      );
      const chunkSize =
        opts.chunkSize === undefined ? undefined : validateChunkSize(Number(opts.chunkSize) * 1024);
      const cache = new TreeCache(treeCacheDir());
      /** A tree's tree cache key: the cache is per server, datastore, group and options. */
      const cacheKeyOn = (session: ClientSession, a: ArchivePlan): TreeCacheKey => ({
        server: `${session.target.host}:${session.target.port}`,
        store: session.repo.store,
        ns: opts.ns ?? '',
        backupType,
        backupId,
        archive: a.archive,
        root: a.path,
        exclude: opts.exclude,
        chunkSize: chunkSize ?? DEFAULT_CHUNK_SIZE,
        // Only when set: the keys (and cache entries) of backups without it stay as they were.
        ...(opts.subsecondMtimes && a.kind === 'tree' && { subsecondMtimes: true }),
        ...(a.kind === 'pxar' && { pxarLayout: PXAR_LAYOUT }),
      });
      const cachedTree = (s: BackupSpec): TreeCacheEntry | undefined => {
        try {
          return cache.lookup(cacheKeyOn(openClientSession(opts.repository), { ...s, size: 0 }));
        } catch {
          return undefined; // a bad repository is reported below, as without the cache
        }
      };
      const archives = await plan(
        specs,
        opts.exclude,
        opts.subsecondMtimes === true,
        opts.treeCache && !opts.dryRun && cachedTree,
        !opts.dryRun,
      );
      const json = opts.outputFormat === 'json';
      if (opts.dryRun) {
        for (const a of archives)
          process.stdout.write(
            `would upload ${a.path} as ${a.archive}${a.kind === 'pxar' ? '' : ` (${formatBytes(a.size)})`}\n`,
          );
        return;
      }
      const session = openClientSession(opts.repository);
      const cacheKey = (a: ArchivePlan) => cacheKeyOn(session, a);
      const pxarArchives = archives.filter((a) => a.kind === 'pxar');
      /** The catalog depends on every pxar tree of the snapshot: its key names them all. */
      const catalogKey = (): TreeCacheKey => ({
        ...cacheKey({ kind: 'pxar', archive: CATALOG_ARCHIVE_NAME, path: '', size: 0 }),
        root: JSON.stringify(pxarArchives.map((a) => [a.archive, a.path])),
      });
      const catalogFingerprint = () =>
        createHash('sha256')
          .update(JSON.stringify(pxarArchives.map((a) => a.fingerprint?.digest ?? '')))
          .digest('hex');
      /** Cache entries to write once the snapshot is finished. */
      const toCache: Array<{
        key: TreeCacheKey;
        fingerprint: string;
        archive: string;
        /** What the next backup may reuse part of (tar entries, pxar spans). */
        entries?: readonly ArchiveSpan[];
        /** pxar: where its keyed directories lie. */
        directories?: readonly DirectorySpan[];
        walkedAtMs?: number;
      }> = [];
      const pool = new ChunkPool();
      const started = Date.now();
      try {
        const result = await session.withAuth(async (credentials) => {
          const writer = await BackupWriter.start(
            {
              target: session.target,
              policy: session.policy,
              credentials,
              store: session.repo.store,
              ns: opts.ns,
              backupType,
              backupId,
              backupTime,
            },
            pool,
          );
          const onSignal = () => {
            writer.abort();
            process.stderr.write('interrupted - the server removes the unfinished snapshot\n');
            process.exit(130);
          };
          process.once('SIGINT', onSignal);
          process.once('SIGTERM', onSignal);
          try {
            process.stderr.write(
              `Starting backup: ${opts.ns ? `[${opts.ns}]:` : ''}${backupType}/${backupId}/${new Date(backupTime * 1000).toISOString().replace(/\.\d{3}Z$/, 'Z')}\n`,
            );
            /**
             * pxar trees whose metadata is unchanged since the last backup (every one of them, and
             * the catalog made with them): their archives and the catalog are the previous
             * snapshot's indexes, appended by digest without reading a file. One changed tree
             * means encoding them all, since the catalog covers them all.
             */
            const pxarReused =
              opts.treeCache && pxarArchives.length > 0
                ? await unchangedPxarTrees(
                    writer,
                    [
                      ...pxarArchives.map((a) => ({
                        key: cacheKey(a),
                        archive: a.archive,
                        fp: a.fingerprint,
                      })),
                      {
                        key: catalogKey(),
                        archive: CATALOG_ARCHIVE_NAME,
                        fp: pxarArchives.every((a) => a.fingerprint?.usable)
                          ? { digest: catalogFingerprint(), entries: 0, usable: true }
                          : undefined,
                      },
                    ],
                    cache,
                  )
                : undefined;
            /** Warnings while archiving pxar trees: what was archived may not match the walk. */
            let pxarWarned = false;
            /** Each pxar archive written here as spans, for the tree cache. */
            const pxarSpans = new Map<string, { spans: ArchiveSpan[]; directories: DirectorySpan[] }>();
            /** The snapshot's file catalog, when it has pxar archives (PBS: `catalog.pcat1.didx`). */
            const catalog = pxarArchives.length > 0 && !pxarReused ? new CatalogWriter() : undefined;
            const perArchive: Array<{
              archive: string;
              stats?: TransferStats;
              size: number;
              'index-reused'?: boolean;
            }> = [];
            for (const a of archives) {
              if (a.kind === 'blob') {
                await writer.uploadBlob(a.archive, readFileSync(a.path));
                perArchive.push({ archive: a.archive, size: a.size });
                continue;
              }
              const progress = startProgress(a.archive, a.size);
              const onProgress = (s: TransferStats) =>
                progress.update({ bytes: s.bytes, newBytes: s.newBytes, reusedBytes: s.reusedBytes });
              try {
                if (a.kind === 'pxar') {
                  const whole = pxarReused?.get(a.archive);
                  if (whole) {
                    const stats = await writer.reuseStream(a.archive, whole, { onProgress });
                    if (!stats) throw ERR_PREVIOUS_SNAPSHOT_CHANGED(a.archive);
                    onProgress(stats);
                    perArchive.push({ archive: a.archive, stats, size: stats.bytes, 'index-reused': true });
                    continue;
                  }
                  // Unchanged files' chunks are reused by position where that is exact (tree-reuse.ts).
                  const cached = opts.treeCache ? cache.lookup(cacheKey(a)) : undefined;
                  const records = cached ? previousPxarRecords(cached) : undefined;
                  const previous = records?.previous;
                  // Not walked for a fingerprint before (nothing cached to compare it with): this
                  // walk's, for the next backup, which then walks first and compares.
                  const walked = opts.treeCache && !a.fingerprint ? new WalkFingerprint() : undefined;
                  const walkStarted = walkStartMs();
                  const pxar = pxarStream(a.path, {
                    archive: a.archive,
                    exclude: opts.exclude.length > 0 ? compileExcludes(opts.exclude) : undefined,
                    catalog,
                    onWarning: (m) => {
                      pxarWarned = true;
                      walked?.spoil();
                      process.stderr.write(`warning: ${m}\n`);
                    },
                    previous: previous?.entries,
                    previousLayout: records?.layout,
                    knownStats: a.stats,
                    xattrs: a.xattrs,
                    onMember: walked && ((rel, st) => walked.add(rel.toString('utf8'), st)),
                  });
                  const stats = await writer.uploadPieces(a.archive, pxar.bytes, previous, {
                    onProgress,
                    chunkSize,
                  });
                  await pxar.done;
                  if (walked) {
                    a.fingerprint = walked.result();
                    a.walkedAtMs = walkStarted;
                  }
                  pxarSpans.set(a.archive, { spans: pxar.spans(), directories: pxar.directories() });
                  onProgress(stats);
                  perArchive.push({ archive: a.archive, stats, size: stats.bytes });
                } else if (a.kind === 'tree') {
                  const key = cacheKey(a);
                  const tree = a.tree!;
                  const walked: TreeFingerprint = tree.fingerprint();
                  const cached = opts.treeCache ? cache.lookup(key) : undefined;
                  if (cached && walked.usable && cached.fingerprint === walked.digest) {
                    const stats = await writer.reuseStream(a.archive, cached, { onProgress });
                    if (stats) {
                      onProgress(stats);
                      perArchive.push({ archive: a.archive, stats, size: stats.bytes, 'index-reused': true });
                      // The entry on disk already says exactly this: not rewritten.
                      continue;
                    }
                  }
                  // Unchanged files' chunks are reused by position where that is exact (tree-reuse.ts).
                  const previous = cached ? previousEntries(cached) : undefined;
                  const stats = await writer.uploadTree(a.archive, tree, previous, { onProgress, chunkSize });
                  onProgress(stats);
                  perArchive.push({ archive: a.archive, stats, size: stats.bytes });
                  const archived = tree.fingerprint();
                  // Racy entries are simply not reusable; a warning spoils everything.
                  if (!archived.warned)
                    toCache.push({
                      key,
                      fingerprint: archived.usable ? archived.digest : '',
                      archive: a.archive,
                      entries: tree.entries,
                    });
                  else cache.forget(key);
                } else {
                  const stats = await writer.uploadImage(a.archive, readImage(a.path, a.size), a.size, {
                    onProgress,
                  });
                  onProgress(stats);
                  perArchive.push({ archive: a.archive, stats, size: stats.bytes });
                }
              } finally {
                progress.stop();
              }
            }
            const reusedCatalog = pxarReused?.get(CATALOG_ARCHIVE_NAME);
            if (reusedCatalog) {
              if (!(await writer.reuseStream(CATALOG_ARCHIVE_NAME, reusedCatalog)))
                throw ERR_PREVIOUS_SNAPSHOT_CHANGED(CATALOG_ARCHIVE_NAME);
            } else if (catalog) {
              // After the archives, as PBS's client: it records what was archived, nothing else.
              await writer.uploadStream(CATALOG_ARCHIVE_NAME, Readable.from([catalog.finish()]), {
                chunkSize,
              });
              if (opts.treeCache) {
                // What the next backup may reuse: every pxar tree and the catalog, or nothing.
                const usable = !pxarWarned && pxarArchives.every((a) => a.fingerprint?.usable);
                // A warning spoils the spans too, as it does the tar path's entries.
                for (const a of pxarArchives)
                  toCache.push({
                    key: cacheKey(a),
                    fingerprint: usable ? a.fingerprint!.digest : '',
                    archive: a.archive,
                    ...(!pxarWarned && {
                      entries: pxarSpans.get(a.archive)?.spans,
                      directories: pxarSpans.get(a.archive)?.directories,
                    }),
                    walkedAtMs: a.walkedAtMs,
                  });
                toCache.push({
                  key: catalogKey(),
                  fingerprint: usable ? catalogFingerprint() : '',
                  archive: CATALOG_ARCHIVE_NAME,
                });
              }
            }
            await writer.finish();
            // Only a finished snapshot can be the next backup's base.
            for (const c of toCache) {
              const file = writer.archive(c.archive);
              if (!file) continue;
              try {
                cache.store(c.key, {
                  fingerprint: c.fingerprint,
                  csum: file.csum,
                  size: file.size,
                  ...(c.entries && { entries: encodeEntries(c.entries) }),
                  ...(c.directories && { dirs: encodeDirectories(c.directories) }),
                  walkedAtMs: c.walkedAtMs,
                });
              } catch (err) {
                process.stderr.write(`warning: unable to update the tree cache: ${(err as Error).message}\n`);
              }
            }
            return perArchive;
          } catch (err) {
            writer.abort();
            throw err;
          } finally {
            process.off('SIGINT', onSignal);
            process.off('SIGTERM', onSignal);
          }
        });
        const ms = Date.now() - started;
        const total = (result as Array<{ stats?: TransferStats }>).reduce(
          (t, r) => {
            if (r.stats) for (const k of Object.keys(t) as Array<keyof TransferStats>) t[k] += r.stats[k];
            return t;
          },
          {
            bytes: 0,
            chunks: 0,
            newBytes: 0,
            newChunks: 0,
            reusedBytes: 0,
            cachedBytes: 0,
            uploadedBytes: 0,
          } as TransferStats,
        );
        const snapshot = `${backupType}/${backupId}/${new Date(backupTime * 1000).toISOString().replace(/\.\d{3}Z$/, 'Z')}`;
        if (json) {
          process.stdout.write(
            JSON.stringify({ snapshot, ns: opts.ns ?? '', 'duration-ms': ms, ...total, archives: result }) +
              '\n',
          );
          return;
        }
        for (const r of result) {
          const s = r.stats;
          process.stdout.write(
            s
              ? `${r.archive}: ${formatBytes(s.bytes)}, new ${formatBytes(s.newBytes)} (${s.newChunks} chunks, ${formatBytes(s.uploadedBytes)} sent), reused ${formatBytes(s.reusedBytes)}${s.cachedBytes > 0 ? ` (${formatBytes(s.cachedBytes)} of it not read, tree cache)` : ''}\n`
              : `${r.archive}: ${formatBytes(r.size)} (blob)\n`,
          );
        }
        process.stdout.write(
          `snapshot ${snapshot}: ${formatBytes(total.bytes)} in ${(ms / 1000).toFixed(1)} s (${formatRate(total.bytes, ms)}), ` +
            `uploaded ${formatBytes(total.uploadedBytes)}, dedup ratio ${dedupRatio(total)}\n`,
        );
      } finally {
        await pool.close();
      }
    });
}
