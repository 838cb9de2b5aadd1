/**
 * The server side of one reader session (PBS `src/api2/reader/`, reference §8.3): downloads of a
 * snapshot's files, and of exactly the chunks its downloaded indexes reference: a chunk not
 * referenced by an index downloaded in this session is refused with 401, as PBS does, so a
 * reader of one snapshot cannot fetch arbitrary chunks of the datastore by digest.
 */
import type { Static } from 'typebox';
import { ProtocolHttpError } from '../errors.js';
import {
  type BackupDir,
  decodeDynamicIndex,
  decodeFixedIndex,
  type HeldLock,
  MANIFEST_BLOB_NAME,
  type ReadonlyDatastore,
  type SnapshotReader,
} from '../datastore/index.js';
import { digestToHex, hexToDigest } from '../datastore/digest.js';
import { checkArchiveName, type SessionLog } from './backup-session.js';
import { RawReply, h2Route, type H2Routes } from './h2-session.js';
import { ChunkDigestParams, FileNameParams, NoParams } from './protocol-schemas.js';
import { chunkBuffers, pooledOutput } from '../sys/buffer-pool.js';

const SPEEDTEST_BYTES = 1024 * 1024;

export interface ReaderSessionInit {
  datastore: ReadonlyDatastore;
  dir: BackupDir;
  /** The snapshot's files. */
  snapshot: SnapshotReader;
  /** Shared snapshot lock, held for the whole session so the snapshot cannot be removed. */
  lock: HeldLock;
  log: SessionLog;
}

export class ReaderSession {
  private readonly init: ReaderSessionInit;
  private readonly allowed = new Set<string>();
  private ended = false;

  constructor(init: ReaderSessionInit) {
    this.init = init;
  }

  /** `"METHOD name"` → endpoint with PBS's parameter schema; all three are downloads (query only). */
  routes(): H2Routes {
    return new Map([
      ['GET download', h2Route(FileNameParams, 'data', (p) => this.download(p))],
      ['GET chunk', h2Route(ChunkDigestParams, 'data', (p) => this.chunk(p))],
      ['GET speedtest', h2Route(NoParams, 'data', async () => new RawReply(Buffer.alloc(SPEEDTEST_BYTES)))],
    ]);
  }

  private async download(p: Static<typeof FileNameParams>): Promise<RawReply> {
    const raw = p['file-name'];
    const name = raw === MANIFEST_BLOB_NAME ? raw : checkArchiveName(raw, 'any', 'file-name');
    const path = this.init.snapshot.describe(name);
    const data = this.init.snapshot.readFile(name);
    if (!data) {
      // PBS: 404 for a file that is not there (its message names the server path; ours the snapshot)
      throw new ProtocolHttpError('NOT_FOUND', `open file '${this.init.dir}/${name}' failed - not found`);
    }
    const index = name.endsWith('.didx')
      ? decodeDynamicIndex(data, { what: path })
      : name.endsWith('.fidx')
        ? decodeFixedIndex(data, { what: path })
        : undefined;
    if (index) for (const d of index.digests()) this.allowed.add(digestToHex(d));
    this.init.log.log(`download "${path}"`);
    return new RawReply(data);
  }

  private async chunk(p: Static<typeof ChunkDigestParams>): Promise<RawReply> {
    const digest = hexToDigest(p.digest, 'digest');
    const hex = digestToHex(digest);
    if (!this.allowed.has(hex))
      throw new ProtocolHttpError('UNAUTHORIZED', `download chunk ${hex} not allowed`);
    // Raw bytes as stored: the client checks CRC and digest, as PBS's reader does. Read into
    // pooled memory, given back once the answer's stream is closed.
    const data = await this.init.datastore.chunks.load(digest, pooledOutput);
    return new RawReply(data, undefined, () => chunkBuffers.give(data));
  }

  /** Release the snapshot lock. Idempotent. */
  end(): void {
    if (this.ended) return;
    this.ended = true;
    this.init.lock.release();
  }
}
