/**
 * Worker thread of the chunk pool (chunk-pool.ts): SHA-256 and zstd-1 DataBlob encoding for
 * backups, blob decoding and digest checks for restores, off the main thread.
 *
 * A backup job is two-phase so an unchanged chunk is never compressed: the worker hashes and
 * answers with the digest, keeps the bytes, and compresses only if the main thread (which knows
 * which digests the server already has) asks for it.
 *
 * Memory moves, it is not copied (sys/buffer-pool.ts), and goes home after use: a chunk arrives
 * in the main thread's (shared) pool memory and goes back to it with the next answer once encoded
 * (or dropped); the blob is encoded into this thread's pooled memory, and the main thread sends
 * that back with a later request once uploaded. Each side so reuses memory it has already
 * faulted in, to the size it uses it for (a blob is often much smaller than its chunk).
 */
import { parentPort } from 'node:worker_threads';
import {
  BLOB_HEADER_SIZE,
  MAX_BLOB_SIZE,
  encodeBlob,
  isEncryptedKind,
  verifyBlobCrc,
  zstdDecompressBounded,
} from '../datastore/data-blob.js';
import { sha256 } from '../datastore/digest.js';
import { chunkBuffers, pooledOutput, transferList, type PoolMemory } from '../sys/buffer-pool.js';
import { CorruptDataError, ERR_CHUNK_NOT_HELD, ERR_NOT_IN_WORKER } from '../errors.js';

/**
 * `spare`, in both directions: pooled memory going home (shared, see sys/buffer-pool.ts), see
 * `sendHome`.
 */
export type WorkerRequest = (
  | { op: 'hash'; id: number; data: Uint8Array }
  | { op: 'encode'; id: number; compress: boolean }
  | { op: 'drop'; id: number }
  | { op: 'decode'; id: number; blob: Uint8Array; digest?: Uint8Array; size?: number }
) & { spare?: PoolMemory[] };

export type WorkerResponse = (
  | { op: 'hashed'; id: number; digest: Uint8Array }
  | { op: 'encoded'; id: number; blob: Uint8Array }
  | { op: 'decoded'; id: number; data: Uint8Array }
  | { op: 'error'; id: number; code?: string; message: string }
) & { spare?: PoolMemory[] };

const held = new Map<number, Uint8Array>();
const port = parentPort;
if (!port) throw ERR_NOT_IN_WORKER();

/** The main thread's memory, sent back with the next answer. */
const goingHome: PoolMemory[] = [];

function sendHome(buf: Uint8Array): void {
  const mem = chunkBuffers.memoryOf(buf);
  if (mem) goingHome.push(mem);
}

/** Answer the main thread, moving `transfer` and sending any memory going home with the answer. */
function answer(msg: WorkerResponse, transfer: ArrayBuffer[] = []): void {
  if (goingHome.length === 0) return port!.postMessage(msg, transfer);
  port!.postMessage({ ...msg, spare: goingHome.splice(0) }, transfer);
}

/**
 * A blob's plaintext, checked as `decodeBlob` checks it (magic, CRC), without copying an
 * uncompressed payload out of the blob: the answer is a view into the blob's memory, which is
 * moved back to the main thread whole (restores of incompressible data moved every chunk twice).
 */
function decodeInPlace(blob: Uint8Array, what: string): Uint8Array {
  const kind = verifyBlobCrc(blob, what);
  if (isEncryptedKind(kind)) throw new CorruptDataError(`${what}: encrypted blob cannot be decoded here`);
  const body = blob.subarray(BLOB_HEADER_SIZE);
  if (kind === 'uncompressed') return body;
  return zstdDecompressBounded(body, MAX_BLOB_SIZE, what, pooledOutput);
}

port.on('message', (msg: WorkerRequest) => {
  for (const ab of msg.spare ?? []) chunkBuffers.give(new Uint8Array(ab));
  try {
    switch (msg.op) {
      case 'hash': {
        held.set(msg.id, msg.data);
        const digest = sha256(msg.data);
        answer({ op: 'hashed', id: msg.id, digest });
        break;
      }
      case 'encode': {
        const data = held.get(msg.id);
        held.delete(msg.id);
        if (!data) throw ERR_CHUNK_NOT_HELD(msg.id);
        const blob = encodeBlob(data, { compress: msg.compress, into: pooledOutput });
        sendHome(data);
        answer({ op: 'encoded', id: msg.id, blob }, transferList(blob));
        break;
      }
      case 'drop': {
        const data = held.get(msg.id);
        held.delete(msg.id);
        if (data) sendHome(data);
        break;
      }
      case 'decode': {
        const what = msg.digest ? `chunk ${Buffer.from(msg.digest).toString('hex')}` : 'blob';
        const data = decodeInPlace(msg.blob, what);
        if (msg.digest && !sha256(data).equals(msg.digest)) {
          answer({
            op: 'error',
            id: msg.id,
            code: 'CORRUPT_DATA',
            message: `${what}: wrong digest (content hashes to ${sha256(data).toString('hex')})`,
          });
          break;
        }
        if (msg.size !== undefined && data.length !== msg.size) {
          answer({
            op: 'error',
            id: msg.id,
            code: 'CORRUPT_DATA',
            message: `${what}: wrong size (${data.length} bytes, index expects ${msg.size})`,
          });
          break;
        }
        // A view into the blob (stored uncompressed) moves the blob's memory back with it;
        // otherwise the blob's memory goes home with this answer.
        const inBlob = data.buffer === msg.blob.buffer;
        if (!inBlob) sendHome(msg.blob);
        answer({ op: 'decoded', id: msg.id, data }, transferList(inBlob ? msg.blob : data));
        break;
      }
    }
  } catch (err) {
    held.delete(msg.id);
    answer({
      op: 'error',
      id: msg.id,
      code: (err as { code?: string }).code,
      message: (err as Error).message,
    });
  }
});
