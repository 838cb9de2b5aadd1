/**
 * A chunk backend in memory: the reference implementation of the `ChunkBackend` contract
 * (chunk-backend.ts), for tests of the layers above and as the model a new backend is compared
 * with. Nothing survives the process. Every method runs to completion without yielding, so each
 * is atomic for its digest.
 */
import { BadRequestError } from '../errors.js';
import {
  ChunkBackendClosedError,
  chunkNotFound,
  countSwept,
  emptySweepStats,
  sweepVerdict,
  type ChunkBackend,
  type ChunkEntry,
  type InsertOptions,
  type InsertResult,
  type SweepCutoffs,
  type SweepOptions,
  type SweepStats,
} from './chunk-backend.js';
import { blobKind, checkBlobHeader, isEncryptedKind, type OutputBuffer, verifyBlobCrc } from './data-blob.js';
import { digestToHex } from './digest.js';

interface StoredObject {
  bytes: Buffer;
  atimeMs: number;
}

const OBJECT_NAME = /^[0-9a-f]{64}(\.[0-9]\.bad)?$/;

export class MemoryChunkBackend implements ChunkBackend {
  /** `<64 hex>` and `<64 hex>.<n>.bad`, as the filesystem backend names its files. */
  private readonly objects = new Map<string, StoredObject>();
  private closed = false;
  private readonly now: () => number;

  /** `now` is the clock marks and inserts are stamped with (ms since the epoch). */
  constructor(opts: { now?: () => number } = {}) {
    this.now = opts.now ?? Date.now;
  }

  private assertOpen(): void {
    if (this.closed) throw new ChunkBackendClosedError('memory');
  }

  async insert(digest: Uint8Array, blob: Uint8Array, opts: InsertOptions = {}): Promise<InsertResult> {
    this.assertOpen();
    const hex = digestToHex(digest);
    const kind = opts.crcChecked
      ? checkBlobHeader(blob, `chunk ${hex}`)
      : verifyBlobCrc(blob, `chunk ${hex}`);
    const encodedSize = blob.length;
    const old = this.objects.get(hex);
    if (old) {
      if (old.bytes.length === encodedSize) {
        old.atimeMs = this.now();
        return { duplicate: true, encodedSize };
      }
      if (old.bytes.length !== 0) {
        // As the filesystem backend: an encrypted copy of an unencrypted chunk is a collision
        // or an attack (the digest of an encrypted chunk includes the key's id, §7.2).
        if (isEncryptedKind(kind)) {
          const oldKind = blobKind(old.bytes);
          if (oldKind !== undefined && !isEncryptedKind(oldKind)) {
            throw new BadRequestError(
              `refusing to overwrite unencrypted chunk ${hex} on store 'memory' with an encrypted chunk with the same digest`,
            );
          }
        }
        if (old.bytes.length < encodedSize) {
          old.atimeMs = this.now();
          return { duplicate: true, encodedSize: old.bytes.length };
        }
      }
    }
    // A copy: the stored chunk must not change with the caller's buffer.
    this.objects.set(hex, { bytes: Buffer.from(blob), atimeMs: this.now() });
    return { duplicate: false, encodedSize };
  }

  async load(digest: Uint8Array, into?: OutputBuffer): Promise<Buffer> {
    this.assertOpen();
    const obj = this.objects.get(digestToHex(digest));
    if (!obj) throw chunkNotFound(digest);
    if (!into) return Buffer.from(obj.bytes);
    const out = into(obj.bytes.length);
    obj.bytes.copy(out);
    return out;
  }

  async exists(digest: Uint8Array): Promise<boolean> {
    this.assertOpen();
    return this.objects.has(digestToHex(digest));
  }

  async mark(digest: Uint8Array): Promise<boolean> {
    this.assertOpen();
    const hex = digestToHex(digest);
    const now = this.now();
    const obj = this.objects.get(hex);
    if (obj) {
      obj.atimeMs = now;
      return true;
    }
    for (let n = 0; n < 10; n++) {
      const bad = this.objects.get(`${hex}.${n}.bad`);
      if (bad) bad.atimeMs = now;
    }
    return false;
  }

  async sweep(cutoffs: SweepCutoffs, opts: SweepOptions = {}): Promise<SweepStats> {
    this.assertOpen();
    opts.signal?.throwIfAborted();
    const s = emptySweepStats();
    for (const [name, obj] of [...this.objects]) {
      const verdict = sweepVerdict(obj.atimeMs, cutoffs);
      if (verdict === 'remove') this.objects.delete(name);
      countSwept(s, verdict, name.length > 64, obj.bytes.length);
    }
    opts.log?.(`processed 100% (${this.objects.size} chunks)`);
    return s;
  }

  async quarantine(digest: Uint8Array): Promise<string | undefined> {
    this.assertOpen();
    const hex = digestToHex(digest);
    const obj = this.objects.get(hex);
    if (!obj) return undefined;
    let n = 0;
    while (n < 9 && this.objects.has(`${hex}.${n}.bad`)) n++;
    const name = `${hex}.${n}.bad`;
    this.objects.delete(hex);
    this.objects.set(name, obj);
    return `memory:${name}`;
  }

  async *list(): AsyncGenerator<ChunkEntry> {
    this.assertOpen();
    for (const [name, obj] of [...this.objects]) {
      yield {
        name,
        digestHex: name.slice(0, 64),
        bad: name.length > 64,
        atimeMs: obj.atimeMs,
        size: obj.bytes.length,
      };
    }
  }

  /** Inserts are as durable as they will ever be. */
  async flush(): Promise<void> {
    this.assertOpen();
  }

  async close(): Promise<void> {
    this.closed = true;
  }

  /**
   * Test hook, what writing a file into `.chunks` is to the filesystem backend: store `bytes`
   * under `name` (`<64 hex>` or `<64 hex>.<n>.bad`) unchecked, e.g. a crash's empty leftover.
   */
  putRaw(name: string, bytes: Uint8Array, atimeMs: number = this.now()): void {
    if (!OBJECT_NAME.test(name)) throw new BadRequestError(`not a chunk object name: '${name}'`);
    this.objects.set(name, { bytes: Buffer.from(bytes), atimeMs });
  }

  /** Test hook, what utimes is to the filesystem backend. False when there is no such object. */
  setAtime(name: string, atimeMs: number): boolean {
    const obj = this.objects.get(name);
    if (obj) obj.atimeMs = atimeMs;
    return obj !== undefined;
  }
}
