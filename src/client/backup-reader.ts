/**
 * The client half of a reader session (PBS `pbs-client/src/backup_reader.rs`, reference §8.3):
 * download the manifest and an archive's index, then its chunks, decoded and checked against
 * their digests in the worker pool, several in flight, handed out in archive order.
 *
 * Nothing the index does not describe is ever written: each chunk must hash to its digest and
 * have the size the index gives it, and the index must match the manifest's checksum.
 */
import { open } from 'node:fs/promises';
import { once } from 'node:events';
import { BadRequestError, CorruptDataError, NotFoundError } from '../errors.js';
import {
  type ArchiveReadAt,
  type BackupManifest,
  IndexReadAt,
  type ChunkIndexReader,
  decodeDynamicIndex,
  decodeFixedIndex,
  decodeManifest,
  MANIFEST_BLOB_NAME,
} from '../datastore/index.js';
import { decodeBlob } from '../datastore/data-blob.js';
import type { ChunkPool } from './chunk-pool.js';
import { READER_PATH, READER_PROTOCOL_ID } from '../api-types/protocol.js';
import { openSnapshotSession, type ProtocolSession, type SnapshotSessionTarget } from './connection.js';

/**
 * Chunks requested ahead of the one being handed out. Four keep the pipeline busy on a local
 * link; eight (before) made the restore slower in CPU and wall time (docs/performance.md, issue
 * 11 fourth round): the server's HTTP/2 and TLS layers copy each batch of queued DATA frames
 * into fresh memory, and the batch grows with the answers in flight.
 */
const PREFETCH = 4;

/** The snapshot a reader session restores from. */
export type SnapshotRef = SnapshotSessionTarget;

export interface RestoreProgress {
  /** Plaintext bytes handed out so far. */
  bytes: number;
  /** Archive size from the index. */
  total: number;
}

export class BackupReader {
  private manifestCache: BackupManifest | undefined;

  private constructor(
    private readonly session: ProtocolSession,
    private readonly pool: ChunkPool,
  ) {}

  /** Open a reader session; refused (e.g. offline maintenance) with the server's error. */
  static async open(ref: SnapshotRef, pool: ChunkPool): Promise<BackupReader> {
    const session = await openSnapshotSession(ref, READER_PATH, READER_PROTOCOL_ID);
    return new BackupReader(session, pool);
  }

  /** A file of the snapshot as stored (an index, a blob). */
  download(fileName: string): Promise<Buffer> {
    return this.session.request('GET', 'download', { 'file-name': fileName });
  }

  async manifest(): Promise<BackupManifest> {
    this.manifestCache ??= decodeManifest(await this.download(MANIFEST_BLOB_NAME), 'manifest');
    return this.manifestCache;
  }

  /** The index of `archive`, checked against the manifest's checksum. */
  async index(archive: string): Promise<ChunkIndexReader> {
    const m = await this.manifest();
    const entry = m.files.find((f) => f.filename === archive);
    if (!entry) {
      throw new NotFoundError(
        `snapshot has no archive '${archive}' (has: ${m.files.map((f) => f.filename).join(', ')})`,
      );
    }
    const raw = await this.download(archive);
    const index = archive.endsWith('.didx')
      ? decodeDynamicIndex(raw, { what: archive, verifyCsum: true })
      : archive.endsWith('.fidx')
        ? decodeFixedIndex(raw, { what: archive, verifyCsum: true })
        : undefined;
    if (!index) throw new BadRequestError(`'${archive}' is not an index (*.didx or *.fidx)`);
    if (index.csum.toString('hex') !== entry.csum) {
      throw new CorruptDataError(`${archive}: index checksum does not match the manifest`);
    }
    return index;
  }

  /** A `*.blob` file's plaintext (CRC checked). */
  async blob(name: string): Promise<Buffer> {
    return decodeBlob(await this.download(name), name);
  }

  /** The archive's plaintext, in order, chunk by chunk. */
  async *chunks(archive: string, onProgress?: (p: RestoreProgress) => void): AsyncGenerator<Buffer> {
    const index = await this.index(archive);
    const progress: RestoreProgress = { bytes: 0, total: index.totalSize };
    const fetchChunk = (i: number) => this.fetchChunk(index, i);
    const inFlight: Array<Promise<Buffer>> = [];
    let next = 0;
    const fill = () => {
      while (inFlight.length < PREFETCH && next < index.count) {
        const p = fetchChunk(next++);
        p.catch(() => {});
        inFlight.push(p);
      }
    };
    fill();
    while (inFlight.length > 0) {
      const data = await inFlight.shift()!;
      fill();
      progress.bytes += data.length;
      onProgress?.(progress);
      yield data;
    }
  }

  /**
   * Give a chunk `chunks` handed out back to the chunk workers, which decode later chunks into
   * its memory (memory already faulted in, and no garbage for the collector). Only once nothing
   * reads it any more, not even a view of it: its memory leaves this thread.
   */
  releaseChunk(chunk: Buffer): void {
    this.pool.release(chunk);
  }

  /**
   * Random access to an archive (catalog listings, single files of a pxar archive): only the
   * chunks the reads touch are fetched.
   */
  async readAt(archive: string): Promise<ArchiveReadAt> {
    const index = await this.index(archive);
    return new IndexReadAt(index, (i) => this.fetchChunk(index, i));
  }

  /** The i-th chunk of `index`, decoded and checked against its digest and size. */
  private async fetchChunk(index: ChunkIndexReader, i: number): Promise<Buffer> {
    const digest = index.digest(i);
    const { start, end } = index.chunkRange(i);
    const blob = await this.session.request('GET', 'chunk', { digest: digest.toString('hex') });
    return this.pool.decode(blob, { digest, size: end - start });
  }

  /** Write an archive's plaintext to a file (an image restore). */
  async restoreToFile(
    archive: string,
    path: string,
    onProgress?: (p: RestoreProgress) => void,
  ): Promise<number> {
    // opened first, so that an existing file is an error here (createWriteStream would report
    // it as an 'error' event nobody listens to yet, which ends the process)
    const out = (await open(path, 'wx', 0o600)).createWriteStream();
    let bytes = 0;
    try {
      for await (const data of this.chunks(archive, onProgress)) {
        bytes += data.length;
        if (!out.write(data)) await once(out, 'drain');
      }
    } finally {
      out.end();
      await once(out, 'close');
    }
    return bytes;
  }

  close(): Promise<void> {
    return this.session.close();
  }
}
