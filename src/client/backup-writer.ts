/**
 * The client half of a backup session (PBS `pbs-client/src/backup_writer.rs`, reference §8.2):
 * archives are chunked (content-defined for streams, 4 MiB fixed for images), hashed and encoded
 * in the worker pool, and only chunks the server does not know cross the wire.
 *
 * Incremental: when the previous snapshot of the group has an archive of the same name, its
 * index is downloaded with `previous`, which also makes the server accept its chunks for
 * appending; every chunk whose digest is in it is appended by digest only, without being
 * compressed or uploaded. A chunk that appears twice in one backup is uploaded once.
 *
 * Appends keep stream order: a chunk is appended only after its upload finished (the server
 * refuses unknown digests), in batches, while later chunks are still being hashed and uploaded.
 */
import { createHash } from 'node:crypto';
import { BadRequestError, ERR_IMAGE_SIZE_CHANGED, StowageError } from '../errors.js';
import { encodeBlob } from '../datastore/data-blob.js';
import {
  type BackupManifest,
  decodeDynamicIndex,
  decodeFixedIndex,
  decodeManifest,
  encodeManifest,
  MANIFEST_BLOB_NAME,
  type ManifestFile,
  newManifest,
} from '../datastore/index.js';
import type { DynamicIndexReader } from '../datastore/index.js';
import type { ChunkPool, ProcessedChunk } from './chunk-pool.js';
import type { TreePlan } from './tar-archive.js';
import { pieceChunks, type ReusedChunk, treeChunks } from './tree-reuse.js';
import type { ReusablePiece } from '../pxar/index.js';
import { DEFAULT_CHUNK_SIZE, FixedChunker, StreamChunker } from './chunker.js';
import { BACKUP_PATH, BACKUP_PROTOCOL_ID } from '../api-types/protocol.js';
import { openSnapshotSession, type ProtocolSession, type SnapshotSessionTarget } from './connection.js';

/** PBS appends digests in batches of 128. */
const APPEND_BATCH = 128;
/** A reused index is appended in larger batches: its chunks need no upload to wait for. */
const REUSE_APPEND_BATCH = 1024;
/**
 * Chunks hashed/uploaded ahead of the oldest one not yet appended, per chunk worker: one being
 * worked on and one waiting (memory: ~this × workers × 4 MiB × 2). More only adds memory the
 * process touches for the first time, which costs more than it overlaps: at 1 GiB on 2 cores, 8
 * in flight instead of 4 took 6 % more CPU and 25 % more peak RSS, 24 took 33 % more CPU
 * (docs/performance.md, thirteenth round).
 */
const IN_FLIGHT_PER_WORKER = 2;
/**
 * Chunks of the previous index (appended by digest, no bytes held) may queue behind the chunks in
 * flight up to this many: the walk goes on past unchanged files while a changed one uploads.
 */
const MAX_QUEUED = 4096;

/** Counters of one archive or a whole backup, for progress and the summary. */
export interface TransferStats {
  /** Plaintext bytes read from the source. */
  bytes: number;
  chunks: number;
  /** Plaintext bytes of chunks uploaded. */
  newBytes: number;
  newChunks: number;
  /** Plaintext bytes of chunks the server already had (appended by digest). */
  reusedBytes: number;
  /** Of those, bytes taken from the previous index by the tree cache without reading a file. */
  cachedBytes: number;
  /** Encoded bytes sent for new chunks. */
  uploadedBytes: number;
}

export function emptyTransferStats(): TransferStats {
  return { bytes: 0, chunks: 0, newBytes: 0, newChunks: 0, reusedBytes: 0, cachedBytes: 0, uploadedBytes: 0 };
}

/** The snapshot a backup session creates. */
export type BackupTarget = SnapshotSessionTarget;

export interface ArchiveOptions {
  /** Called after each chunk with the archive's counters so far. */
  onProgress?: (stats: TransferStats) => void;
  /** Dynamic chunking average size (default 4 MiB). */
  chunkSize?: number;
}

interface QueuedChunk {
  offset: number;
  size: number;
  /** Hashed and uploaded from bytes (false: appended by digest from the previous index). */
  holdsBytes: boolean;
  done: Promise<ProcessedChunk>;
}

/** Where each entry of the previous backup's tar stream was (from the tree cache). */
export interface PreviousTreeEntries {
  /** The previous index this describes (checksum and size, as in the manifest). */
  csum: string;
  size: number;
  /** Entry key → [start, length]. */
  entries: Map<string, [number, number]>;
}

/** The chunks of `source` as `chunker` cuts them, the tail included. */
async function* chunksOf(
  source: AsyncIterable<Uint8Array>,
  chunker: StreamChunker | FixedChunker,
): AsyncGenerator<Buffer> {
  for await (const piece of source) yield* chunker.push(piece);
  const last = chunker.finish();
  if (last) yield last;
}

export class BackupWriter {
  private readonly files: ManifestFile[] = [];
  /** Chunks of this session whose upload is under way, so a duplicate appends only after it. */
  private readonly uploading = new Map<string, Promise<void>>();
  private previous: BackupManifest | undefined;
  private previousLoaded = false;
  readonly total = emptyTransferStats();

  private constructor(
    private readonly session: ProtocolSession,
    private readonly pool: ChunkPool,
    readonly spec: BackupTarget,
  ) {}

  /** Open the backup session; a refused admission (e.g. maintenance) throws the server's error. */
  static async start(spec: BackupTarget, pool: ChunkPool): Promise<BackupWriter> {
    const session = await openSnapshotSession(spec, BACKUP_PATH, BACKUP_PROTOCOL_ID);
    return new BackupWriter(session, pool, spec);
  }

  /** The previous snapshot's manifest (the incremental base), or undefined when there is none. */
  async previousManifest(): Promise<BackupManifest | undefined> {
    if (this.previousLoaded) return this.previous;
    this.previousLoaded = true;
    const time = await this.session.json<number | null>('GET', 'previous_backup_time');
    if (time === null) return undefined;
    try {
      const raw = await this.session.request('GET', 'previous', { 'archive-name': MANIFEST_BLOB_NAME });
      this.previous = decodeManifest(raw, 'previous manifest');
    } catch (err) {
      if (err instanceof StowageError && err.code === 'NOT_FOUND') return undefined;
      throw err;
    }
    return this.previous;
  }

  /** Digests of the previous snapshot's archive `name`, registered as known on the server too. */
  private async knownFromPrevious(name: string): Promise<Set<string>> {
    return (await this.previousIndex(name)).known;
  }

  /** The previous snapshot's index of `name` (downloading it registers its chunks as known). */
  private async previousIndex(name: string): Promise<{
    known: Set<string>;
    index?: ReturnType<typeof decodeDynamicIndex | typeof decodeFixedIndex>;
  }> {
    const known = new Set<string>();
    const prev = await this.previousManifest();
    const entry = prev?.files.find((f) => f.filename === name);
    if (!entry) return { known };
    const raw = await this.session.request('GET', 'previous', { 'archive-name': name });
    const index = name.endsWith('.didx') ? decodeDynamicIndex(raw) : decodeFixedIndex(raw);
    for (const d of index.digests()) known.add(d.toString('hex'));
    if (index.kind === 'dynamic') {
      // Reused by position only when its checksum is right (as `reuseStream` checks it).
      try {
        decodeDynamicIndex(raw, { what: `previous ${name}`, verifyCsum: true });
      } catch {
        return { known };
      }
    }
    return { known, index: index.csum.toString('hex') === entry.csum ? index : undefined };
  }

  /**
   * Upload a planned tree as a dynamic index `name` (`*.tar.didx`). With `previous` (the tree
   * cache's entry map of the previous backup) and a previous index that is exactly the one it
   * describes, unchanged entries' chunks are appended by digest without reading them wherever the
   * chunker provably cuts the same (tree-reuse.ts); the index is the one a full read gives.
   */
  async uploadTree(
    name: string,
    plan: TreePlan,
    previous: PreviousTreeEntries | undefined,
    opts: ArchiveOptions = {},
  ): Promise<TransferStats> {
    const { known, prevIndex } = await this.previousTreeIndex(name, previous);
    return this.uploadDynamic(name, known, opts, () =>
      treeChunks(
        plan,
        prevIndex && previous ? { index: prevIndex, entries: previous.entries } : undefined,
        opts.chunkSize ?? DEFAULT_CHUNK_SIZE,
      ),
    );
  }

  /**
   * Upload a stream given as pieces (a pxar archive whose unchanged files are reusable pieces of
   * the previous archive, `previous` the tree cache's map of it) as a dynamic index `name`: old
   * chunks are appended by digest wherever the chunker provably cuts the same (tree-reuse.ts).
   */
  async uploadPieces(
    name: string,
    pieces: AsyncIterable<Buffer | ReusablePiece>,
    previous: PreviousTreeEntries | undefined,
    opts: ArchiveOptions = {},
  ): Promise<TransferStats> {
    const { known, prevIndex } = await this.previousTreeIndex(name, previous);
    return this.uploadDynamic(name, known, opts, () =>
      pieceChunks(pieces, prevIndex, opts.chunkSize ?? DEFAULT_CHUNK_SIZE),
    );
  }

  /** The previous index of `name`, when it is exactly the one the tree cache's `previous` describes. */
  private async previousTreeIndex(
    name: string,
    previous: PreviousTreeEntries | undefined,
  ): Promise<{ known: Set<string>; prevIndex: DynamicIndexReader | undefined }> {
    if (!name.endsWith('.didx')) throw new BadRequestError(`archive name '${name}' must end in .didx`);
    const { known, index } = await this.previousIndex(name);
    const prevIndex =
      previous &&
      index?.kind === 'dynamic' &&
      index.csum.toString('hex') === previous.csum &&
      index.totalSize === previous.size
        ? (index as DynamicIndexReader)
        : undefined;
    return { known, prevIndex };
  }

  /** Upload a stream (e.g. a tar of a directory) as a dynamic index `name` (`*.didx`). */
  async uploadStream(
    name: string,
    source: AsyncIterable<Uint8Array>,
    opts: ArchiveOptions = {},
  ): Promise<TransferStats> {
    if (!name.endsWith('.didx')) throw new BadRequestError(`archive name '${name}' must end in .didx`);
    const known = await this.knownFromPrevious(name);
    const chunker = new StreamChunker(opts.chunkSize ?? DEFAULT_CHUNK_SIZE);
    return this.uploadDynamic(name, known, opts, () => chunksOf(source, chunker));
  }

  /**
   * One dynamic index: open it, run `chunks` through the upload pipeline, close it with PBS's
   * checksum (SHA-256 over each chunk's end offset and digest) and record it for the manifest.
   */
  private async uploadDynamic(
    name: string,
    known: Set<string>,
    opts: ArchiveOptions,
    chunks: () => AsyncGenerator<Buffer | ReusedChunk>,
  ): Promise<TransferStats> {
    const wid = await this.session.json<number>('POST', 'dynamic_index', { 'archive-name': name });
    const csum = createHash('sha256');
    const stats = await this.pipeline(wid, 'dynamic', known, opts, chunks, (c, digest) => {
      const end = Buffer.alloc(8);
      end.writeBigUInt64LE(BigInt(c.offset + c.size));
      csum.update(end).update(digest);
    });
    const hex = csum.digest('hex');
    await this.session.json('POST', 'dynamic_close', {
      wid,
      'chunk-count': stats.chunks,
      size: stats.bytes,
      csum: hex,
    });
    this.files.push({ filename: name, 'crypt-mode': 'none', size: stats.bytes, csum: hex });
    return stats;
  }

  /**
   * Write archive `name` as a copy of the previous snapshot's index, when that index is exactly
   * the one `expect` describes (checksum and size, as the tree cache remembers them): every chunk
   * is appended by digest, nothing is read, hashed or uploaded. Returns undefined, having written
   * nothing, when the previous snapshot has no such index; the caller then uploads normally.
   */
  async reuseStream(
    name: string,
    expect: { csum: string; size: number },
    opts: ArchiveOptions = {},
  ): Promise<TransferStats | undefined> {
    if (!name.endsWith('.didx')) throw new BadRequestError(`archive name '${name}' must end in .didx`);
    const prev = await this.previousManifest();
    const entry = prev?.files.find((f) => f.filename === name);
    if (!entry || entry.csum !== expect.csum || entry.size !== expect.size) return undefined;
    // Downloading it through `previous` is also what makes the server accept its digests.
    const raw = await this.session.request('GET', 'previous', { 'archive-name': name });
    const index = decodeDynamicIndex(raw, { what: `previous ${name}`, verifyCsum: true });
    if (index.csum.toString('hex') !== expect.csum || index.totalSize !== expect.size) return undefined;
    const wid = await this.session.json<number>('POST', 'dynamic_index', { 'archive-name': name });
    const stats = emptyTransferStats();
    for (let first = 0; first < index.count; first += REUSE_APPEND_BATCH) {
      const digests: string[] = [];
      const offsets: number[] = [];
      for (let i = first; i < Math.min(index.count, first + REUSE_APPEND_BATCH); i++) {
        const { start, end } = index.chunkRange(i);
        digests.push(index.digest(i).toString('hex'));
        offsets.push(start);
        stats.chunks++;
        stats.bytes += end - start;
        stats.reusedBytes += end - start;
        stats.cachedBytes += end - start;
      }
      await this.session.json(
        'PUT',
        'dynamic_index',
        {},
        { wid, 'digest-list': digests, 'offset-list': offsets },
      );
      opts.onProgress?.(stats);
    }
    await this.session.json('POST', 'dynamic_close', {
      wid,
      'chunk-count': stats.chunks,
      size: stats.bytes,
      csum: expect.csum,
    });
    this.files.push({ filename: name, 'crypt-mode': 'none', size: stats.bytes, csum: expect.csum });
    for (const k of Object.keys(stats) as Array<keyof TransferStats>) this.total[k] += stats[k];
    return stats;
  }

  /** The manifest entry (size, checksum) of an archive written in this session. */
  archive(name: string): ManifestFile | undefined {
    return this.files.find((f) => f.filename === name);
  }

  /** Upload an image of exactly `size` bytes as a fixed index `name` (`*.fidx`, 4 MiB chunks). */
  async uploadImage(
    name: string,
    source: AsyncIterable<Uint8Array>,
    size: number,
    opts: ArchiveOptions = {},
  ): Promise<TransferStats> {
    if (!name.endsWith('.fidx')) throw new BadRequestError(`archive name '${name}' must end in .fidx`);
    if (size <= 0) throw new BadRequestError(`image '${name}' is empty`);
    const known = await this.knownFromPrevious(name);
    const wid = await this.session.json<number>('POST', 'fixed_index', { 'archive-name': name, size });
    const chunker = new FixedChunker(DEFAULT_CHUNK_SIZE);
    const csum = createHash('sha256');
    const stats = await this.pipeline(
      wid,
      'fixed',
      known,
      opts,
      () => chunksOf(source, chunker),
      (_c, digest) => csum.update(digest),
    );
    if (stats.bytes !== size) {
      throw ERR_IMAGE_SIZE_CHANGED(name, stats.bytes, size);
    }
    const hex = csum.digest('hex');
    await this.session.json('POST', 'fixed_close', { wid, 'chunk-count': stats.chunks, size, csum: hex });
    this.files.push({ filename: name, 'crypt-mode': 'none', size, csum: hex });
    return stats;
  }

  /**
   * Hash/encode chunks in the pool, upload new ones, append all in order. `onAppend` sees every
   * chunk in stream order (for the index checksum).
   */
  private async pipeline(
    wid: number,
    kind: 'dynamic' | 'fixed',
    known: Set<string>,
    opts: ArchiveOptions,
    chunks: () => AsyncGenerator<Buffer | ReusedChunk>,
    onAppend: (c: QueuedChunk, digest: Buffer) => void,
  ): Promise<TransferStats> {
    const stats = emptyTransferStats();
    const queue: QueuedChunk[] = [];
    /** Chunks in `queue` that hold bytes (hashed, compressed or uploaded), not reused by digest. */
    let withBytes = 0;
    let batchDigests: string[] = [];
    let batchOffsets: number[] = [];
    const flush = async () => {
      if (batchDigests.length === 0) return;
      const body = { wid, 'digest-list': batchDigests, 'offset-list': batchOffsets };
      batchDigests = [];
      batchOffsets = [];
      await this.session.json('PUT', `${kind}_index`, {}, body);
    };
    const appendHead = async () => {
      const c = queue.shift()!;
      if (c.holdsBytes) withBytes--;
      const r = await c.done;
      onAppend(c, r.digest);
      batchDigests.push(r.digest.toString('hex'));
      batchOffsets.push(c.offset);
      stats.chunks++;
      opts.onProgress?.(stats);
      if (batchDigests.length >= APPEND_BATCH) await flush();
    };
    let offset = 0;
    try {
      for await (const chunk of chunks()) {
        let c: QueuedChunk;
        if (Buffer.isBuffer(chunk)) {
          c = {
            offset,
            size: chunk.length,
            holdsBytes: true,
            done: this.processChunk(chunk, wid, kind, known, stats),
          };
          withBytes++;
        } else {
          // Appended by digest from the previous index: nothing to hash or upload.
          stats.reusedBytes += chunk.size;
          stats.cachedBytes += chunk.size;
          c = {
            offset,
            size: chunk.size,
            holdsBytes: false,
            done: Promise.resolve({ digest: chunk.digest, size: chunk.size }),
          };
        }
        const size = c.size;
        c.done.catch(() => {}); // awaited in order below; avoid unhandled rejections meanwhile
        queue.push(c);
        offset += size;
        stats.bytes += size;
        // Only chunks with bytes are bounded by the workers: a reused chunk waits for its turn
        // to be appended without holding the walk up behind an upload.
        while (withBytes >= IN_FLIGHT_PER_WORKER * this.pool.threads || queue.length >= MAX_QUEUED)
          await appendHead();
      }
      while (queue.length > 0) await appendHead();
      await flush();
    } finally {
      for (const k of Object.keys(stats) as Array<keyof TransferStats>) this.total[k] += stats[k];
    }
    return stats;
  }

  private async processChunk(
    chunk: Buffer,
    wid: number,
    kind: 'dynamic' | 'fixed',
    known: Set<string>,
    stats: TransferStats,
  ): Promise<ProcessedChunk> {
    let uploaded: (() => void) | undefined;
    const r = await this.pool.process(chunk, (digest) => {
      const hex = digest.toString('hex');
      if (known.has(hex)) return true;
      // A second copy in this backup is never re-sent. Workers hash in parallel, so that copy
      // may come *earlier* in the stream than the one uploading: its append waits for the upload.
      known.add(hex);
      this.uploading.set(hex, new Promise<void>((resolve) => (uploaded = resolve)));
      return false;
    });
    if (!r.blob) {
      await this.uploading.get(r.digest.toString('hex'));
      stats.reusedBytes += r.size;
      return r;
    }
    const blob = r.blob;
    try {
      await this.session.request(
        'POST',
        `${kind}_chunk`,
        { wid, digest: r.digest.toString('hex'), size: r.size, 'encoded-size': blob.length },
        blob,
      );
    } finally {
      uploaded?.();
    }
    stats.newBytes += r.size;
    stats.newChunks++;
    stats.uploadedBytes += blob.length;
    // The server answered, so it read every byte: the blob's memory is free for the next chunk.
    // (After a failure the stream may still hold it; that memory is left to the GC.)
    this.pool.release(blob);
    return { digest: r.digest, size: r.size };
  }

  /** Upload a small file as a `*.blob` (zstd-compressed DataBlob), e.g. a client log. */
  async uploadBlob(name: string, data: Buffer): Promise<void> {
    if (!name.endsWith('.blob') || name === MANIFEST_BLOB_NAME) {
      throw new BadRequestError(`blob name '${name}' must end in .blob and not be the manifest`);
    }
    const blob = encodeBlob(data, { compress: true });
    await this.putBlob(name, blob);
    // Manifest size/csum of a blob are those of the encoded bytes (reference §7.5).
    this.files.push({
      filename: name,
      'crypt-mode': 'none',
      size: blob.length,
      csum: createHash('sha256').update(blob).digest('hex'),
    });
  }

  private async putBlob(name: string, blob: Buffer): Promise<void> {
    await this.session.request('POST', 'blob', { 'file-name': name, 'encoded-size': blob.length }, blob);
  }

  /** Upload the manifest (the archives uploaded so far) and finish: the snapshot becomes visible. */
  async finish(): Promise<BackupManifest> {
    const m = newManifest(this.spec.backupType, this.spec.backupId, this.spec.backupTime);
    m.files = [...this.files].sort((a, b) => (a.filename < b.filename ? -1 : 1));
    await this.putBlob(MANIFEST_BLOB_NAME, encodeManifest(m));
    await this.session.json('POST', 'finish');
    await this.session.close();
    return m;
  }

  /** Drop the session without finishing: the server removes the snapshot. */
  abort(): void {
    this.session.destroy();
  }
}
