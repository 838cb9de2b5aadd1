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
import { isBackupOwner } from '../config/user-config.js';
import {
  BadRequestError,
  ERR_BASE_SNAPSHOT_REMOVED,
  ERR_SESSION_ENDED,
  ProtocolHttpError,
  StowageError,
} from '../errors.js';
import {
  type BackupDir,
  type BackupGroup,
  type BackupManifest,
  type ChunkUploadStats,
  decodeDynamicIndex,
  decodeFixedIndex,
  decodeManifest,
  type DynamicIndexReader,
  type DynamicIndexWriter,
  type FixedIndexReader,
  type FixedIndexWriter,
  type HeldLock,
  MANIFEST_BLOB_NAME,
  type ManifestFile,
  newManifest,
  type SnapshotReader,
  type SnapshotWriter,
  type WritableDatastore,
  type WriterRegistration,
} from '../datastore/index.js';
import {
  BLOB_HEADER_SIZE,
  ENCRYPTED_BLOB_HEADER_SIZE,
  blobKind,
  isEncryptedKind,
  rewriteBlobCrc,
  verifyBlobCrc,
  zstdDigestBounded,
} from '../datastore/data-blob.js';
import { digestToHex, hexToDigest, sha256 } from '../datastore/digest.js';
import type { Static } from 'typebox';

import { RawReply, h2Route, type H2Request, type H2Routes } from './h2-session.js';
import {
  AppendParams,
  ArchiveNameParams,
  CloseDynamicParams,
  CloseFixedParams,
  CreateDynamicIndexParams,
  CreateFixedIndexParams,
  NoParams,
  UploadBlobParams,
  MAX_CHUNK_SIZE,
  UploadChunkParams,
} from './protocol-schemas.js';
import { chunkBuffers } from '../sys/buffer-pool.js';

export { MAX_CHUNK_SIZE } from './protocol-schemas.js';
/** Fixed-index chunks from the backup API are 4 MiB (reference §7.1). */
export const FIXED_CHUNK_SIZE = 4 * 1024 * 1024;
const MAX_WRITERS = 256;
/** PBS's speedtest upload body. */
const SPEEDTEST_LIMIT = 64 * 1024 * 1024;

const ARCHIVE_NAME = /^[A-Za-z0-9_][A-Za-z0-9._-]*$/;

/**
 * Validate an archive or blob name of a snapshot: a plain file name (the schema already checked
 * PBS's safe-id) with the given extension, refused with PBS's words (`wrong archive extension`).
 */
export function checkArchiveName(
  name: string,
  ext: '.didx' | '.fidx' | '.blob' | 'any',
  param = 'archive-name',
): string {
  if (!ARCHIVE_NAME.test(name) || name.length > 128) {
    throw new BadRequestError(`parameter verification failed - '${param}': invalid archive name '${name}'`);
  }
  const extOk = ext === 'any' ? /\.(didx|fidx|blob)$/.test(name) : name.endsWith(ext);
  if (!extOk) {
    if (ext === '.blob') throw new BadRequestError(`wrong blob file extension: '${name}'`);
    throw new BadRequestError(`wrong archive extension: '${name}'`);
  }
  return name;
}

/**
 * The checks of an uploaded chunk, each byte visited as few times as possible (this runs on the
 * server's only thread for every new chunk): PBS recomputes the CRC rather than trusting the
 * client's (§7.2), so it is computed once and written, not also verified; the content check is
 * the decode, hashed window by window as it is decoded (the plaintext is never stored whole), and
 * an uncompressed payload is hashed in place.
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
  let plain: { size: number; digest: Buffer };
  if (kind === 'uncompressed') plain = { size: payload.length, digest: sha256(payload) };
  else {
    try {
      // a chunk is at most MAX_CHUNK_SIZE (the schema's bound on `size`), whatever the frame claims
      plain = zstdDigestBounded(payload, MAX_CHUNK_SIZE, `uploaded chunk ${hex}`);
    } catch (err) {
      throw new BadRequestError((err as Error).message);
    }
  }
  if (plain.size !== size) {
    throw new BadRequestError(
      `uploaded chunk ${hex}: wrong size (${plain.size} bytes, index expects ${size})`,
    );
  }
  if (!plain.digest.equals(digest)) {
    throw new BadRequestError(
      `uploaded chunk ${hex}: wrong digest (content hashes to ${plain.digest.toString('hex')})`,
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
  /** The size announced at creation; undefined for an image of unknown size (a pipe). */
  size: number | undefined;
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
  datastore: WritableDatastore;
  dir: BackupDir;
  /** The new snapshot's files. */
  writer: SnapshotWriter;
  /** Held for the whole session: no other backup of this group, no group deletion. */
  groupLock: HeldLock;
  /** Exclusive lock of the new snapshot. */
  dirLock: HeldLock;
  /** The incremental base (last finished snapshot not failed in verify), locked shared. */
  base?: { dir: BackupDir; reader: SnapshotReader; lock: HeldLock };
  /** The group did not exist before this session (removed again if the session fails). */
  groupCreated: boolean;
  /** A `proxmox-backup-client benchmark` session: its data is removed even when finished. */
  benchmark: boolean;
  log: SessionLog;
}

export class BackupSession {
  readonly datastore: WritableDatastore;
  readonly dir: BackupDir;
  private readonly snapshot: SnapshotWriter;
  private readonly init: BackupSessionInit;
  private readonly log: SessionLog;
  private readonly knownChunks = new Map<string, number>();
  private readonly writers = new Map<number, WriterState>();
  private readonly files = new Map<string, ManifestFile>();
  private readonly stats = emptyStats();
  private readonly writerRegistration: WriterRegistration;
  private nextWid = 1;
  private fileCount = 0;
  private finishedFlag = false;
  private ended = false;

  constructor(init: BackupSessionInit) {
    this.init = init;
    this.datastore = init.datastore;
    this.dir = init.dir;
    this.snapshot = init.writer;
    this.log = init.log;
    // GC must not sweep chunks this session inserts or touches before its index is renamed in.
    this.writerRegistration = init.datastore.writers.register();
  }

  get finished(): boolean {
    return this.finishedFlag;
  }

  /** `"METHOD name"` → endpoint with PBS's parameter schema, for `serveRoutes`. */
  routes(): H2Routes {
    return new Map([
      ['POST blob', h2Route(UploadBlobParams, 'data', (p, r) => this.uploadBlob(p, r))],
      [
        'POST dynamic_index',
        h2Route(CreateDynamicIndexParams, 'parameters', (p) => this.createDynamicIndex(p)),
      ],
      ['PUT dynamic_index', h2Route(AppendParams, 'parameters', (p) => this.appendChunks(p, 'dynamic'))],
      ['POST dynamic_chunk', h2Route(UploadChunkParams, 'data', (p, r) => this.uploadChunk(p, r, 'dynamic'))],
      ['POST dynamic_close', h2Route(CloseDynamicParams, 'parameters', (p) => this.closeDynamicIndex(p))],
      ['POST fixed_index', h2Route(CreateFixedIndexParams, 'parameters', (p) => this.createFixedIndex(p))],
      ['PUT fixed_index', h2Route(AppendParams, 'parameters', (p) => this.appendChunks(p, 'fixed'))],
      ['POST fixed_chunk', h2Route(UploadChunkParams, 'data', (p, r) => this.uploadChunk(p, r, 'fixed'))],
      ['POST fixed_close', h2Route(CloseFixedParams, 'parameters', (p) => this.closeFixedIndex(p))],
      ['GET previous', h2Route(ArchiveNameParams, 'data', (p) => this.downloadPrevious(p))],
      [
        'GET previous_backup_time',
        h2Route(NoParams, 'parameters', async () => this.init.base?.dir.time ?? null),
      ],
      ['POST speedtest', h2Route(NoParams, 'data', async (_p, r) => void (await r.body(SPEEDTEST_LIMIT)))],
      ['POST finish', h2Route(NoParams, 'parameters', () => this.finish())],
    ]);
  }

  private assertActive(): void {
    if (this.finishedFlag) throw new BadRequestError('backup already marked as finished.');
    if (this.ended) throw ERR_SESSION_ENDED();
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

  private async uploadBlob(p: Static<typeof UploadBlobParams>, req: H2Request): Promise<null> {
    this.assertActive();
    const name = checkArchiveName(p['file-name'], '.blob', 'file-name');
    const encodedSize = p['encoded-size'];
    this.checkNewFile(name);
    const data = await req.body(encodedSize);
    if (data.length !== encodedSize) {
      throw new BadRequestError(`got blob with unexpected length (${encodedSize} != ${data.length})`);
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
      this.snapshot.stageManifest(data);
      this.log.log(`add blob "${name}" (${data.length} bytes, staged until finish)`);
      return null;
    }
    this.snapshot.addBlob(name, data);
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

  private async createDynamicIndex(p: Static<typeof CreateDynamicIndexParams>): Promise<number> {
    this.assertActive();
    const name = checkArchiveName(p['archive-name'], '.didx');
    this.checkNewFile(name);
    const wid = this.allocWid();
    const index = this.snapshot.createDynamicIndex(name);
    this.writers.set(wid, { kind: 'dynamic', name, index, offset: 0, chunkCount: 0, stats: emptyStats() });
    this.log.log(`created new dynamic index ${wid} ("${name}")`);
    return wid;
  }

  /**
   * PBS `create_fixed_index`: `size` may be left out (an image read from a pipe, PBS bug 3847);
   * the index then grows with the chunks appended and its size is fixed on close. With
   * `reuse-csum` the previous snapshot's index is cloned when its checksum matches and it has the
   * same number of chunks (PBS compares chunk counts, not sizes, so a grown last chunk reuses).
   */
  private async createFixedIndex(p: Static<typeof CreateFixedIndexParams>): Promise<number> {
    this.assertActive();
    const name = checkArchiveName(p['archive-name'], '.fidx');
    const size = p.size;
    const reuseCsum = p['reuse-csum'];
    this.checkNewFile(name);
    let previous: FixedIndexReader | undefined;
    if (reuseCsum !== undefined) {
      if (size === undefined) throw new BadRequestError('size is required for incremental backups');
      if (!this.init.base) throw new BadRequestError('cannot reuse index - no valid previous backup exists');
      previous = this.init.base.reader.openFixedIndex(name);
      if (!previous) throw new BadRequestError('cannot reuse index - no previous backup exists for archive');
      const oldCsum = previous.computeCsum().toString('hex');
      if (oldCsum !== reuseCsum) {
        throw new BadRequestError(
          `expected csum (${reuseCsum}) doesn't match last backup's (${oldCsum}), cannot do incremental backup`,
        );
      }
      const count = Math.ceil(size / FIXED_CHUNK_SIZE);
      if (previous.chunkSize !== FIXED_CHUNK_SIZE || previous.count !== count) {
        throw new BadRequestError(
          `cannot reuse index - index sizes not equal (${count} != ${previous.count})`,
        );
      }
    }
    const wid = this.allocWid();
    const index = this.snapshot.createFixedIndex(name, size, FIXED_CHUNK_SIZE);
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

  private async uploadChunk(
    p: Static<typeof UploadChunkParams>,
    req: H2Request,
    kind: 'dynamic' | 'fixed',
  ): Promise<string> {
    this.assertActive();
    const { wid, size } = p;
    const digest = hexToDigest(p.digest, 'digest');
    const encodedSize = p['encoded-size'];
    const writer = this.writer(wid, kind);
    const data = await req.upload(encodedSize);
    let res: Awaited<ReturnType<typeof this.datastore.chunks.insert>>;
    const hex = digestToHex(digest);
    try {
      if (data.length !== encodedSize) {
        throw new BadRequestError(`uploaded chunk has unexpected size (${data.length} != ${encodedSize})`);
      }
      if (blobKind(data) === undefined)
        throw new BadRequestError(`uploaded chunk ${hex}: wrong magic number`);
      checkUploadedChunk(digest, hex, data, size);
      res = await this.datastore.chunks.insert(digest, data, { crcChecked: true });
    } finally {
      // the chunk store has written (or refused) it: the body's memory serves the next upload
      chunkBuffers.give(data);
    }
    this.knownChunks.set(hex, size);
    writer.stats.count++;
    writer.stats.size += size;
    writer.stats.compressed_size += encodedSize;
    if (res.duplicate) writer.stats.duplicates++;
    return hex;
  }

  private async appendChunks(p: Static<typeof AppendParams>, kind: 'dynamic' | 'fixed'): Promise<null> {
    this.assertActive();
    const digests = p['digest-list'];
    const offsets = p['offset-list'];
    if (digests.length !== offsets.length) {
      throw new BadRequestError(`offset list has wrong length (${offsets.length} != ${digests.length})`);
    }
    const writer = this.writer(p.wid, kind);
    for (let i = 0; i < digests.length; i++) {
      const hex = digests[i]!;
      const digest = hexToDigest(hex, 'digest-list');
      const offset = offsets[i]!;
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

  private closeParams(p: Static<typeof CloseFixedParams>): {
    wid: number;
    chunkCount: number;
    size: number;
    csum: string;
  } {
    const csum = p.csum.toLowerCase();
    hexToDigest(csum, 'csum');
    return { wid: p.wid, chunkCount: p['chunk-count'], size: p.size, csum };
  }

  private uploadStatLine(w: WriterState, size: number): string {
    const s = w.stats;
    const pct = size > 0 ? ((s.size * 100) / size).toFixed(0) : '0';
    return (
      `Upload statistics for '${w.name}': size ${size}, chunks ${w.chunkCount}, uploaded ${s.size} (${pct}%), ` +
      `compressed ${s.compressed_size}, duplicates ${s.duplicates}`
    );
  }

  private async closeDynamicIndex(params: Static<typeof CloseDynamicParams>): Promise<null> {
    this.assertActive();
    const p = this.closeParams(params);
    const w = this.writer(p.wid, 'dynamic');
    if (p.chunkCount !== w.chunkCount) {
      throw new BadRequestError(
        `dynamic writer '${w.name}' close failed - unexpected chunk count (${w.chunkCount} != ${p.chunkCount})`,
      );
    }
    if (p.size !== w.offset) {
      throw new BadRequestError(
        `dynamic writer '${w.name}' close failed - unexpected file size (${w.offset} != ${p.size})`,
      );
    }
    const res = this.snapshot.closeIndex(w.index, p.csum);
    this.writers.delete(p.wid);
    if (!res) throw new BadRequestError(`dynamic writer '${w.name}' close failed - got unexpected checksum`);
    addStats(this.stats, w.stats);
    this.registerFile({ filename: w.name, 'crypt-mode': 'none', size: res.size, csum: p.csum });
    this.log.log(this.uploadStatLine(w, res.size));
    return null;
  }

  private async closeFixedIndex(params: Static<typeof CloseFixedParams>): Promise<null> {
    this.assertActive();
    const p = this.closeParams(params);
    const w = this.writer(p.wid, 'fixed');
    // PBS `fixed_writer_close`, same checks and words
    if (p.chunkCount !== w.chunkCount) {
      throw new BadRequestError(
        `fixed writer '${w.name}' close failed - received wrong number of chunk (${w.chunkCount} != ${p.chunkCount})`,
      );
    }
    if (w.incremental && w.size === undefined) w.index.growToSize(p.size);
    if (!w.incremental) {
      if (p.chunkCount !== w.index.count) {
        throw new BadRequestError(
          `fixed writer '${w.name}' close failed - unexpected chunk count (${w.index.count} != ${p.chunkCount})`,
        );
      }
      if (w.size !== undefined && p.size !== w.size) {
        throw new BadRequestError(
          `fixed writer '${w.name}' close failed - unexpected file size (${w.size} != ${p.size})`,
        );
      }
      if (p.size !== w.index.size) {
        throw new BadRequestError(
          `fixed writer '${w.name}' close failed - unexpected size (${p.size} != ${w.index.size})`,
        );
      }
    }
    const res = this.snapshot.closeIndex(w.index, p.csum);
    this.writers.delete(p.wid);
    if (!res) throw new BadRequestError(`fixed writer '${w.name}' close failed - got unexpected checksum`);
    addStats(this.stats, w.stats);
    this.registerFile({ filename: w.name, 'crypt-mode': 'none', size: res.size, csum: p.csum });
    this.log.log(this.uploadStatLine(w, res.size));
    return null;
  }

  /**
   * Download a file of the base snapshot; for an index, its chunks become known to this session
   * so the client can append them without uploading (PBS `previous`).
   */
  private async downloadPrevious(p: Static<typeof ArchiveNameParams>): Promise<RawReply> {
    this.assertActive();
    const name = checkArchiveName(p['archive-name'], 'any');
    const base = this.init.base;
    if (!base) throw new BadRequestError('no valid previous backup');
    const path = base.reader.describe(name);
    const data = base.reader.readFile(name);
    if (!data) {
      // PBS: an index that cannot be opened is a plain error; a missing blob a 404
      const message = `previous backup ${base.dir} has no file '${name}'`;
      if (name.endsWith('.blob')) throw new ProtocolHttpError('NOT_FOUND', message);
      throw new BadRequestError(message);
    }
    if (name.endsWith('.didx')) this.registerIndexChunks(decodeDynamicIndex(data, { what: path }));
    else if (name.endsWith('.fidx')) this.registerIndexChunks(decodeFixedIndex(data, { what: path }));
    this.log.log(`download '${name}' from previous backup.`);
    return new RawReply(data);
  }

  private loadStagedManifest(): BackupManifest | undefined {
    const staged = this.snapshot.stagedManifest();
    if (!staged) return undefined;
    const m = decodeManifest(staged, 'uploaded manifest');
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
    if (base && !base.reader.exists()) {
      throw ERR_BASE_SNAPSHOT_REMOVED(base.dir);
    }
    // Chunks durable first, then the manifest that needs them (see SnapshotWriter.finish).
    await this.snapshot.finish(manifest);
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
      for (const w of this.writers.values()) {
        try {
          w.index.abort();
        } catch (err) {
          // each writer's file is closed whatever the others do (an open file keeps a disk busy)
          this.log.warn(`could not discard index '${w.name}': ${(err as Error).message}`);
        }
      }
      this.writers.clear();
      if (this.init.benchmark) this.log.log('benchmark finished successfully');
      else if (!this.finishedFlag) this.log.warn('removing unfinished backup');
      if (!this.finishedFlag || this.init.benchmark) {
        this.snapshot.abort({ removeEmptyGroup: this.init.groupCreated });
      }
    } catch (err) {
      // A disk that failed under the session (a pulled removable disk: EIO) cannot be cleaned up
      // now. The snapshot has no manifest, so it is never listed or restored; the start-up cleanup
      // and GC remove it once the disk works again. Throwing here would end the server process.
      this.log.warn(`could not remove the unfinished backup: ${(err as Error).message}`);
    } finally {
      this.writerRegistration.release();
      this.init.dirLock.release();
      this.init.base?.lock.release();
      this.init.groupLock.release();
    }
  }
}

/**
 * Prepare a backup of `dir` (PBS `upgrade_to_backup_protocol`, steps after admission, §8.2),
 * refusing with PBS's words and statuses (404 for the namespace, 400 for the rest):
 * namespace exists; group locked (created with `authId` as owner if new) and the owner check;
 * the last finished snapshot whose verification did not fail becomes the base, locked shared;
 * the new time must be newer than the last backup; the snapshot directory is created, locked.
 * Every lock taken is released again when a later step fails.
 */
export async function openBackupSession(
  datastore: WritableDatastore,
  dir: BackupDir,
  authId: string,
  log: SessionLog,
  opts: { benchmark?: boolean } = {},
): Promise<BackupSession> {
  const group = dir.group;
  if (!datastore.namespaceExists(group.ns)) throw new ProtocolHttpError('NOT_FOUND', 'namespace not found');
  const groupExisted = datastore.groupExists(group);
  const { owner, lock: groupLock } = await datastore.createLockedBackupGroup(group, authId);
  const locks: HeldLock[] = [groupLock];
  try {
    // PBS lets anyone with Datastore.Backup run the benchmark
    if (!isBackupOwner(owner, authId) && !opts.benchmark) {
      throw new BadRequestError(`backup owner check failed (${authId} != ${owner})`);
    }
    const finished = datastore.listSnapshots(group).filter((s) => s.finished);
    const last = finished.at(-1);
    if (last && dir.time <= last.dir.time)
      throw new BadRequestError('backup timestamp is older than last backup.');
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
        const lock = await datastore.locks.tryLockSnapshot(last.dir, 'base snapshot is being removed', {
          shared: true,
        });
        locks.push(lock);
        base = { dir: last.dir, reader: datastore.openSnapshotReader(last.dir), lock };
      }
    }
    let created: { writer: SnapshotWriter; lock: HeldLock };
    try {
      created = await datastore.createSnapshotWriter(dir);
    } catch (err) {
      if (err instanceof StowageError && err.code === 'ALREADY_EXISTS') {
        throw new BadRequestError('backup directory already exists.');
      }
      throw err;
    }
    const { writer, lock: dirLock } = created;
    return new BackupSession({
      datastore,
      dir,
      writer,
      groupLock,
      dirLock,
      base,
      groupCreated: !groupExisted,
      benchmark: opts.benchmark ?? false,
      log,
    });
  } catch (err) {
    for (const l of locks.reverse()) l.release();
    throw err;
  }
}
