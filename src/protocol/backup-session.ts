/**
 * The server side of one backup session (PBS `src/api2/backup/`, reference §8.2): the state of
 * one snapshot being written, and the HTTP/2 endpoints that write it.
 *
 * Rules, as PBS:
 * - an uploaded chunk's body must be exactly `encoded-size` bytes; its CRC is recomputed; an
 *   unencrypted chunk is decoded and must hash to `digest` and have `size` bytes;
 * - a digest can only be appended to an index if it was uploaded in this session or registered
 *   as known by `previous` (or `reuse-csum`): "no such chunk";
 * - `finish` needs every writer closed and at least one file; it writes the manifest with
 *   `chunk_upload_stats`; a session that ends without `finish` has its snapshot removed.
 *
 * Better than PBS: the client's `index.json.blob` is staged under another name and renamed into
 * place by `finish`, so the snapshot never looks finished (§7.1 "finished = manifest exists")
 * before it is; and the manifest must list exactly files uploaded in this session.
 */
import { existsSync, readFileSync, rmSync, unlinkSync } from 'node:fs';
import { decompress as zstdDecompress } from 'zstd-napi';
import { join } from 'node:path';
import { isBackupOwner } from '../config/user-config.js';
import { BadRequestError, NotFoundError, StowageError } from '../errors.js';
import { replaceFile } from '../sys/atomic-file.js';
import type { FileLock } from '../sys/file-lock.js';
import type { BackupDir, BackupGroup } from '../datastore/backup-info.js';
import type { WriterRegistration } from '../datastore/chunk-store.js';
import {
  BLOB_HEADER_SIZE,
  ENCRYPTED_BLOB_HEADER_SIZE,
  blobKind,
  isEncryptedKind,
  rewriteBlobCrc,
  verifyBlobCrc,
} from '../datastore/data-blob.js';
import type { Datastore } from '../datastore/datastore.js';
import { digestToHex, hexToDigest, sha256 } from '../datastore/digest.js';
import { DynamicIndexReader, DynamicIndexWriter } from '../datastore/dynamic-index.js';
import { FixedIndexReader, FixedIndexWriter } from '../datastore/fixed-index.js';
import {
  MANIFEST_BLOB_NAME,
  decodeManifest,
  newManifest,
  storeManifest,
  type BackupManifest,
  type ChunkUploadStats,
  type ManifestFile,
} from '../datastore/manifest.js';
import { intParam, RawReply, requiredParam, type H2Handler, type H2Request } from './h2-session.js';

/** PBS caps an uploaded chunk at 16 MiB of plaintext (reference §7.1). */
export const MAX_CHUNK_SIZE = 16 * 1024 * 1024;
/** Fixed-index chunks from the backup API are 4 MiB (reference §7.1). */
export const FIXED_CHUNK_SIZE = 4 * 1024 * 1024;
/** Encoded blobs: PBS MAX_BLOB_SIZE (128 MiB) plus the largest header. */
const MAX_BLOB_UPLOAD = 128 * 1024 * 1024 + 64;
const MAX_WRITERS = 256;
/** Name the client's manifest waits under until `finish` (not matched by BACKUP_FILE_REGEX). */
const STAGED_MANIFEST = `${MANIFEST_BLOB_NAME}.tmp_upload`;

const ARCHIVE_NAME = /^[A-Za-z0-9_][A-Za-z0-9._-]*$/;

/** Validate an archive or blob name of a snapshot: a plain file name with the given extension. */
export function checkArchiveName(
  name: string,
  ext: '.didx' | '.fidx' | '.blob' | 'any',
  param = 'archive-name',
): string {
  const extOk = ext === 'any' ? /\.(didx|fidx|blob)$/.test(name) : name.endsWith(ext);
  if (!ARCHIVE_NAME.test(name) || name.length > 128 || !extOk) {
    const want = ext === 'any' ? '*.didx, *.fidx or *.blob' : `*${ext}`;
    throw new BadRequestError(
      `parameter verification failed - '${param}': invalid archive name '${name}' (expected ${want})`,
    );
  }
  return name;
}

/**
 * The checks of an uploaded chunk, each byte visited as few times as possible (this runs on the
 * server's only thread for every new chunk): PBS recomputes the CRC rather than trusting the
 * client's (§7.2), so it is computed once and written, not also verified; the content check is
 * the decode, and an uncompressed payload is hashed in place instead of copied out first.
 * Encrypted chunks are opaque (their digest includes the client's key, §7.2).
 */
function checkUploadedChunk(digest: Buffer, hex: string, data: Buffer, size: number): void {
  const kind = blobKind(data);
  if (kind === undefined) throw new BadRequestError(`uploaded chunk ${hex}: wrong magic number`);
  const headerSize = isEncryptedKind(kind) ? ENCRYPTED_BLOB_HEADER_SIZE : BLOB_HEADER_SIZE;
  if (data.length < headerSize) throw new BadRequestError(`uploaded chunk ${hex}: truncated header`);
  rewriteBlobCrc(data);
  if (isEncryptedKind(kind)) return;
  const payload = data.subarray(BLOB_HEADER_SIZE);
  let plain: Buffer;
  if (kind === 'uncompressed') plain = payload;
  else {
    try {
      plain = zstdDecompress(payload);
    } catch (err) {
      throw new BadRequestError(`uploaded chunk ${hex}: zstd data is corrupt (${(err as Error).message})`);
    }
  }
  if (plain.length !== size) {
    throw new BadRequestError(
      `uploaded chunk ${hex}: wrong size (${plain.length} bytes, index expects ${size})`,
    );
  }
  const actual = sha256(plain);
  if (!actual.equals(digest)) {
    throw new BadRequestError(
      `uploaded chunk ${hex}: wrong digest (content hashes to ${actual.toString('hex')})`,
    );
  }
}

function emptyStats(): ChunkUploadStats {
  return { count: 0, size: 0, compressed_size: 0, duplicates: 0 };
}

function addStats(into: ChunkUploadStats, s: ChunkUploadStats): void {
  into.count += s.count;
  into.size += s.size;
  into.compressed_size += s.compressed_size;
  into.duplicates += s.duplicates;
}

interface DynamicWriterState {
  kind: 'dynamic';
  name: string;
  index: DynamicIndexWriter;
  /** Stream offset the next appended chunk must start at. */
  offset: number;
  chunkCount: number;
  stats: ChunkUploadStats;
}

interface FixedWriterState {
  kind: 'fixed';
  name: string;
  index: FixedIndexWriter;
  size: number;
  chunkCount: number;
  /** Cloned from the previous snapshot (`reuse-csum`): only changed chunks are appended. */
  incremental: boolean;
  stats: ChunkUploadStats;
}

type WriterState = DynamicWriterState | FixedWriterState;

/** Where session events are logged (the worker task's log). */
export interface SessionLog {
  log(message: string): void;
  warn(message: string): void;
}

export interface BackupSessionInit {
  datastore: Datastore;
  dir: BackupDir;
  snapshotPath: string;
  /** Held for the whole session: no other backup of this group, no group deletion. */
  groupLock: FileLock;
  /** Exclusive lock of the new snapshot. */
  dirLock: FileLock;
  /** The incremental base (last finished snapshot not failed in verify), locked shared. */
  base?: { dir: BackupDir; path: string; lock: FileLock };
  /** The group did not exist before this session (removed again if the session fails). */
  groupCreated: boolean;
  log: SessionLog;
}

export class BackupSession {
  readonly datastore: Datastore;
  readonly dir: BackupDir;
  readonly snapshotPath: string;
  private readonly init: BackupSessionInit;
  private readonly log: SessionLog;
  private readonly knownChunks = new Map<string, number>();
  private readonly writers = new Map<number, WriterState>();
  private readonly files = new Map<string, ManifestFile>();
  private readonly stats = emptyStats();
  private readonly writerRegistration: WriterRegistration;
  private nextWid = 1;
  private fileCount = 0;
  private stagedManifest = false;
  private finishedFlag = false;
  private ended = false;

  constructor(init: BackupSessionInit) {
    this.init = init;
    this.datastore = init.datastore;
    this.dir = init.dir;
    this.snapshotPath = init.snapshotPath;
    this.log = init.log;
    // GC must not sweep chunks this session inserts or touches before its index is renamed in.
    this.writerRegistration = init.datastore.chunkStore.registerWriter();
  }

  get finished(): boolean {
    return this.finishedFlag;
  }

  /** `"METHOD name"` → handler, for `serveRoutes`. */
  routes(): Map<string, H2Handler> {
    return new Map<string, H2Handler>([
      ['POST blob', (r) => this.uploadBlob(r)],
      ['POST dynamic_index', (r) => this.createDynamicIndex(r)],
      ['PUT dynamic_index', (r) => this.appendChunks(r, 'dynamic')],
      ['POST dynamic_chunk', (r) => this.uploadChunk(r, 'dynamic')],
      ['POST dynamic_close', (r) => this.closeDynamicIndex(r)],
      ['POST fixed_index', (r) => this.createFixedIndex(r)],
      ['PUT fixed_index', (r) => this.appendChunks(r, 'fixed')],
      ['POST fixed_chunk', (r) => this.uploadChunk(r, 'fixed')],
      ['POST fixed_close', (r) => this.closeFixedIndex(r)],
      ['GET previous', (r) => this.downloadPrevious(r)],
      ['GET previous_backup_time', async () => this.init.base?.dir.time ?? null],
      ['POST speedtest', async (r) => void (await r.body(64 * 1024 * 1024))],
      ['POST finish', () => this.finish()],
    ]);
  }

  private assertActive(): void {
    if (this.finishedFlag) throw new BadRequestError('backup already marked as finished.');
    if (this.ended) throw new StowageError('CONFLICT', 'backup session has ended');
  }

  private writer<K extends WriterState['kind']>(wid: number, kind: K): Extract<WriterState, { kind: K }> {
    const w = this.writers.get(wid);
    if (!w || w.kind !== kind) throw new BadRequestError(`${kind} writer '${wid}' not registered`);
    return w as Extract<WriterState, { kind: K }>;
  }

  private allocWid(): number {
    if (this.writers.size >= MAX_WRITERS)
      throw new BadRequestError(`too many open writers (max ${MAX_WRITERS})`);
    return this.nextWid++;
  }

  private registerFile(file: ManifestFile): void {
    if (this.files.has(file.filename))
      throw new BadRequestError(`file '${file.filename}' was already uploaded`);
    this.files.set(file.filename, file);
    this.fileCount++;
  }

  private checkNewFile(name: string): void {
    if (this.files.has(name) || [...this.writers.values()].some((w) => w.name === name)) {
      throw new BadRequestError(`file '${name}' was already uploaded in this session`);
    }
  }

  private async uploadBlob(req: H2Request): Promise<null> {
    this.assertActive();
    const name = checkArchiveName(requiredParam(req.query, 'file-name'), '.blob', 'file-name');
    const encodedSize = intParam(req.query, 'encoded-size', { max: MAX_BLOB_UPLOAD });
    this.checkNewFile(name);
    const data = await req.body(encodedSize);
    if (data.length !== encodedSize) {
      throw new BadRequestError(`uploaded blob has unexpected size (${data.length} != ${encodedSize})`);
    }
    try {
      verifyBlobCrc(data, `blob '${name}'`);
    } catch (err) {
      throw new BadRequestError((err as Error).message);
    }
    if (name === MANIFEST_BLOB_NAME) {
      // Staged: the manifest makes a snapshot "finished", which only `finish` may do.
      try {
        decodeManifest(data, 'uploaded manifest');
      } catch (err) {
        throw new BadRequestError((err as Error).message);
      }
      replaceFile(join(this.snapshotPath, STAGED_MANIFEST), data, { mode: 0o644 });
      this.stagedManifest = true;
      this.log.log(`add blob "${name}" (${data.length} bytes, staged until finish)`);
      return null;
    }
    replaceFile(join(this.snapshotPath, name), data, {
      mode: 0o644,
      fsync: this.datastore.syncLevel === 'file',
    });
    this.registerFile({
      filename: name,
      'crypt-mode': this.cryptModeOf(data),
      size: data.length,
      csum: sha256(data).toString('hex'),
    });
    this.log.log(`add blob "${name}" (${data.length} bytes)`);
    return null;
  }

  private cryptModeOf(blob: Buffer): ManifestFile['crypt-mode'] {
    const kind = blobKind(blob);
    return kind && isEncryptedKind(kind) ? 'encrypt' : 'none';
  }

  private async createDynamicIndex(req: H2Request): Promise<number> {
    this.assertActive();
    const name = checkArchiveName(requiredParam(req.query, 'archive-name'), '.didx');
    this.checkNewFile(name);
    const wid = this.allocWid();
    const index = DynamicIndexWriter.create(join(this.snapshotPath, name), {
      syncLevel: this.datastore.syncLevel,
    });
    this.writers.set(wid, { kind: 'dynamic', name, index, offset: 0, chunkCount: 0, stats: emptyStats() });
    this.log.log(`created new dynamic index ${wid} ("${name}")`);
    return wid;
  }

  private async createFixedIndex(req: H2Request): Promise<number> {
    this.assertActive();
    const name = checkArchiveName(requiredParam(req.query, 'archive-name'), '.fidx');
    const size = intParam(req.query, 'size', { min: 1 });
    const reuseCsum = req.query.get('reuse-csum');
    this.checkNewFile(name);
    let previous: FixedIndexReader | undefined;
    if (reuseCsum) {
      if (!this.init.base) throw new BadRequestError('cannot reuse index - no valid previous backup exists');
      const prevPath = join(this.init.base.path, name);
      if (!existsSync(prevPath))
        throw new BadRequestError(`cannot reuse index - no previous backup of '${name}'`);
      previous = FixedIndexReader.open(prevPath);
      if (previous.csum.toString('hex') !== reuseCsum.toLowerCase()) {
        throw new BadRequestError('cannot reuse index - index checksum does not match');
      }
      if (previous.size !== size || previous.chunkSize !== FIXED_CHUNK_SIZE) {
        throw new BadRequestError(`cannot reuse index - size mismatch (${previous.size} != ${size})`);
      }
    }
    const wid = this.allocWid();
    const index = FixedIndexWriter.create(join(this.snapshotPath, name), {
      size,
      chunkSize: FIXED_CHUNK_SIZE,
      syncLevel: this.datastore.syncLevel,
    });
    try {
      if (previous) {
        index.cloneFrom(previous);
        this.registerIndexChunks(previous);
      }
    } catch (err) {
      index.abort();
      throw err;
    }
    this.writers.set(wid, {
      kind: 'fixed',
      name,
      index,
      size,
      chunkCount: 0,
      incremental: previous !== undefined,
      stats: emptyStats(),
    });
    this.log.log(`created new fixed index ${wid} ("${name}")${previous ? ' reusing previous index' : ''}`);
    return wid;
  }

  private registerIndexChunks(index: FixedIndexReader | DynamicIndexReader): void {
    for (let i = 0; i < index.count; i++) {
      const { start, end } = index.chunkRange(i);
      this.knownChunks.set(digestToHex(index.digest(i)), end - start);
    }
  }

  private async uploadChunk(req: H2Request, kind: 'dynamic' | 'fixed'): Promise<string> {
    this.assertActive();
    const wid = intParam(req.query, 'wid', { min: 1 });
    const digest = hexToDigest(requiredParam(req.query, 'digest'));
    const size = intParam(req.query, 'size', { min: 1, max: MAX_CHUNK_SIZE });
    const encodedSize = intParam(req.query, 'encoded-size', { min: 13, max: MAX_CHUNK_SIZE + 64 });
    const writer = this.writer(wid, kind);
    const data = await req.body(encodedSize);
    if (data.length !== encodedSize) {
      throw new BadRequestError(`uploaded chunk has unexpected size (${data.length} != ${encodedSize})`);
    }
    const hex = digestToHex(digest);
    if (blobKind(data) === undefined) throw new BadRequestError(`uploaded chunk ${hex}: wrong magic number`);
    checkUploadedChunk(digest, hex, data, size);
    const res = this.datastore.chunkStore.insertChunk(digest, data);
    this.knownChunks.set(hex, size);
    writer.stats.count++;
    writer.stats.size += size;
    writer.stats.compressed_size += encodedSize;
    if (res.duplicate) writer.stats.duplicates++;
    return hex;
  }

  private async appendChunks(req: H2Request, kind: 'dynamic' | 'fixed'): Promise<null> {
    this.assertActive();
    let body: unknown;
    try {
      body = JSON.parse((await req.body(16 * 1024 * 1024)).toString('utf8'));
    } catch (err) {
      if (err instanceof StowageError) throw err;
      throw new BadRequestError('append: request body is not valid JSON');
    }
    const b = body as { wid?: unknown; 'digest-list'?: unknown; 'offset-list'?: unknown };
    const wid = Number(b.wid);
    if (!Number.isSafeInteger(wid))
      throw new BadRequestError("parameter verification failed - 'wid': missing or not an integer");
    const digests = b['digest-list'];
    const offsets = b['offset-list'];
    if (!Array.isArray(digests) || !Array.isArray(offsets)) {
      throw new BadRequestError(
        "parameter verification failed - 'digest-list' and 'offset-list' must be arrays",
      );
    }
    if (digests.length !== offsets.length) {
      throw new BadRequestError(`offset list has wrong length (${offsets.length} != ${digests.length})`);
    }
    const writer = this.writer(wid, kind);
    for (let i = 0; i < digests.length; i++) {
      const hex = String(digests[i]).toLowerCase();
      const digest = hexToDigest(hex, 'digest-list');
      const offset = Number(offsets[i]);
      if (!Number.isSafeInteger(offset) || offset < 0)
        throw new BadRequestError(`offset-list[${i}] is not a valid offset`);
      const size = this.knownChunks.get(hex);
      if (size === undefined) throw new BadRequestError(`no such chunk ${hex}`);
      if (writer.kind === 'dynamic') {
        if (offset !== writer.offset) {
          throw new BadRequestError(
            `dynamic writer '${writer.name}' append chunk failed - got strange chunk offset (${offset} != ${writer.offset})`,
          );
        }
        writer.offset += size;
        writer.index.addChunk(writer.offset, digest);
      } else {
        writer.index.addChunk(offset, size, digest);
      }
      writer.chunkCount++;
    }
    return null;
  }

  private closeParams(req: H2Request): { wid: number; chunkCount: number; size: number; csum: string } {
    const wid = intParam(req.query, 'wid', { min: 1 });
    const chunkCount = intParam(req.query, 'chunk-count');
    const size = intParam(req.query, 'size');
    const csum = requiredParam(req.query, 'csum').toLowerCase();
    hexToDigest(csum, 'csum');
    return { wid, chunkCount, size, csum };
  }

  private uploadStatLine(w: WriterState, size: number): string {
    const s = w.stats;
    const pct = size > 0 ? ((s.size * 100) / size).toFixed(0) : '0';
    return (
      `Upload statistics for '${w.name}': size ${size}, chunks ${w.chunkCount}, uploaded ${s.size} (${pct}%), ` +
      `compressed ${s.compressed_size}, duplicates ${s.duplicates}`
    );
  }

  private async closeDynamicIndex(req: H2Request): Promise<null> {
    this.assertActive();
    const p = this.closeParams(req);
    const w = this.writer(p.wid, 'dynamic');
    if (p.chunkCount !== w.chunkCount) {
      throw new BadRequestError(
        `dynamic writer '${w.name}' close failed - unexpected chunk count (${p.chunkCount} != ${w.chunkCount})`,
      );
    }
    if (p.size !== w.offset) {
      throw new BadRequestError(
        `dynamic writer '${w.name}' close failed - unexpected file size (${p.size} != ${w.offset})`,
      );
    }
    const res = w.index.close();
    this.writers.delete(p.wid);
    if (res.csum.toString('hex') !== p.csum) {
      rmSync(w.index.path, { force: true });
      throw new BadRequestError(`dynamic writer '${w.name}' close failed - got unexpected checksum`);
    }
    addStats(this.stats, w.stats);
    this.registerFile({ filename: w.name, 'crypt-mode': 'none', size: res.size, csum: p.csum });
    this.log.log(this.uploadStatLine(w, res.size));
    return null;
  }

  private async closeFixedIndex(req: H2Request): Promise<null> {
    this.assertActive();
    const p = this.closeParams(req);
    const w = this.writer(p.wid, 'fixed');
    if (p.chunkCount !== w.chunkCount) {
      throw new BadRequestError(
        `fixed writer '${w.name}' close failed - received wrong number of chunks (${p.chunkCount} != ${w.chunkCount})`,
      );
    }
    if (!w.incremental) {
      if (p.chunkCount !== w.index.count) {
        throw new BadRequestError(
          `fixed writer '${w.name}' close failed - unexpected chunk count (${p.chunkCount} != ${w.index.count})`,
        );
      }
      if (p.size !== w.size) {
        throw new BadRequestError(
          `fixed writer '${w.name}' close failed - unexpected file size (${p.size} != ${w.size})`,
        );
      }
    }
    const res = w.index.close();
    this.writers.delete(p.wid);
    if (res.csum.toString('hex') !== p.csum) {
      rmSync(w.index.path, { force: true });
      throw new BadRequestError(`fixed writer '${w.name}' close failed - got unexpected checksum`);
    }
    addStats(this.stats, w.stats);
    this.registerFile({ filename: w.name, 'crypt-mode': 'none', size: res.size, csum: p.csum });
    this.log.log(this.uploadStatLine(w, res.size));
    return null;
  }

  /**
   * Download a file of the base snapshot; for an index, its chunks become known to this session
   * so the client can append them without uploading (PBS `previous`).
   */
  private async downloadPrevious(req: H2Request): Promise<RawReply> {
    this.assertActive();
    const name = checkArchiveName(requiredParam(req.query, 'archive-name'), 'any');
    const base = this.init.base;
    if (!base) throw new NotFoundError('no valid previous backup');
    const path = join(base.path, name);
    let data: Buffer;
    try {
      data = readFileSync(path);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
        throw new NotFoundError(`previous backup has no file '${name}'`);
      }
      throw err;
    }
    if (name.endsWith('.didx')) this.registerIndexChunks(DynamicIndexReader.fromBuffer(data, { what: path }));
    else if (name.endsWith('.fidx'))
      this.registerIndexChunks(FixedIndexReader.fromBuffer(data, { what: path }));
    this.log.log(`download '${name}' from previous backup.`);
    return new RawReply(data);
  }

  private loadStagedManifest(): BackupManifest | undefined {
    if (!this.stagedManifest) return undefined;
    const m = decodeManifest(readFileSync(join(this.snapshotPath, STAGED_MANIFEST)), 'uploaded manifest');
    const g: BackupGroup = this.dir.group;
    if (m['backup-type'] !== g.type || m['backup-id'] !== g.id || m['backup-time'] !== this.dir.time) {
      throw new BadRequestError(
        `uploaded manifest is for ${m['backup-type']}/${m['backup-id']}/${m['backup-time']}, not for this backup (${this.dir})`,
      );
    }
    for (const f of m.files) {
      const uploaded = this.files.get(f.filename);
      if (!uploaded)
        throw new BadRequestError(`manifest lists '${f.filename}', which was not uploaded in this session`);
      if (uploaded.csum !== f.csum || uploaded.size !== f.size) {
        throw new BadRequestError(
          `manifest entry for '${f.filename}' does not match the uploaded file (size or csum)`,
        );
      }
    }
    return m;
  }

  private async finish(): Promise<null> {
    this.assertActive();
    if (this.writers.size > 0) throw new BadRequestError('found open index writer - unable to finish backup');
    if (this.fileCount === 0)
      throw new BadRequestError('backup does not contain valid files (file count == 0)');
    let manifest = this.loadStagedManifest();
    if (!manifest) {
      manifest = newManifest(this.dir.group.type, this.dir.group.id, this.dir.time);
      manifest.files = [...this.files.values()].sort((a, b) => (a.filename < b.filename ? -1 : 1));
    }
    manifest.unprotected.chunk_upload_stats = { ...this.stats };
    const base = this.init.base;
    if (base && !existsSync(base.path)) {
      throw new StowageError(
        'CONFLICT',
        `base snapshot ${base.dir} was removed during backup, cannot finish as chunks might be missing`,
      );
    }
    // PBS `try_ensure_sync_level`: chunks must be durable before the manifest that needs them.
    if (this.datastore.syncLevel === 'filesystem') await this.datastore.chunkStore.syncFilesystem();
    storeManifest(this.snapshotPath, manifest, { fsync: this.datastore.syncLevel === 'file' });
    if (this.stagedManifest) unlinkSync(join(this.snapshotPath, STAGED_MANIFEST));
    this.finishedFlag = true;
    this.log.log('backup finished successfully');
    return null;
  }

  /**
   * End the session, whatever happened: abort open writers, remove the snapshot unless finished
   * (and the group, if this session created it and it is empty), release every lock. Idempotent.
   */
  end(): void {
    if (this.ended) return;
    this.ended = true;
    try {
      for (const w of this.writers.values()) w.index.abort();
      this.writers.clear();
      if (!this.finishedFlag) {
        this.log.warn('removing unfinished backup');
        rmSync(this.snapshotPath, { recursive: true, force: true });
        if (this.init.groupCreated) {
          try {
            if (this.datastore.listSnapshots(this.dir.group).length === 0) {
              rmSync(this.datastore.groupPath(this.dir.group), { recursive: true, force: true });
            }
          } catch {
            // group already gone
          }
        }
      }
    } finally {
      this.writerRegistration.release();
      this.init.dirLock.release();
      this.init.base?.lock.release();
      this.init.groupLock.release();
    }
  }
}

/**
 * Prepare a backup of `dir` (PBS `upgrade_to_backup_protocol`, steps after admission, §8.2):
 * namespace exists; group locked (created with `authId` as owner if new) and the owner check;
 * the last finished snapshot whose verification did not fail becomes the base, locked shared;
 * the new time must be newer than the last backup; the snapshot directory is created, locked.
 * Every lock taken is released again when a later step fails.
 */
export async function openBackupSession(
  datastore: Datastore,
  dir: BackupDir,
  authId: string,
  log: SessionLog,
): Promise<BackupSession> {
  const group = dir.group;
  const groupExisted = existsSync(datastore.groupPath(group));
  const { owner, lock: groupLock } = await datastore.createLockedBackupGroup(group, authId);
  const locks: FileLock[] = [groupLock];
  try {
    checkBackupOwner(owner, authId);
    const finished = datastore.listSnapshots(group).filter((s) => s.finished);
    const last = finished.at(-1);
    if (last && dir.time <= last.dir.time) {
      throw new BadRequestError(
        `backup timestamp is older than last backup (${dir.timeString} <= ${last.dir.timeString})`,
      );
    }
    let base: BackupSessionInit['base'];
    if (last) {
      let verifyFailed = false;
      try {
        verifyFailed = datastore.loadManifest(last.dir).unprotected.verify_state?.state === 'failed';
      } catch {
        verifyFailed = true; // an unreadable manifest is no base to build on
      }
      if (verifyFailed) {
        log.log(`last snapshot ${last.dir} failed verification or is unreadable - not using it as base`);
      } else {
        const lock = datastore.locks.tryLockSnapshot(last.dir, 'base snapshot is being removed', {
          shared: true,
        });
        locks.push(lock);
        base = { dir: last.dir, path: datastore.snapshotPath(last.dir), lock };
      }
    }
    const { path, lock: dirLock } = datastore.createLockedBackupDir(dir);
    return new BackupSession({
      datastore,
      dir,
      snapshotPath: path,
      groupLock,
      dirLock,
      base,
      groupCreated: !groupExisted,
      log,
    });
  } catch (err) {
    for (const l of locks.reverse()) l.release();
    throw err;
  }
}

/** Throw PBS's 403 unless `authId` owns the group (`isBackupOwner`). */
export function checkBackupOwner(owner: string, authId: string): void {
  if (!isBackupOwner(owner, authId)) {
    throw new StowageError('FORBIDDEN', `backup owner check failed (${authId} != ${owner})`);
  }
}
