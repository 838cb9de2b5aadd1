/**
 * Per-file reuse of the previous snapshot's chunks for a tree archive (the tree cache's partial
 * case, restic's and borg's files cache): entries whose metadata key is unchanged since the last
 * backup have the same bytes as then, at a known range of the previous tar stream. Their chunks
 * are appended by digest without reading the files, wherever that provably gives the chunks a
 * full read would give.
 *
 * Why not simply per file: the chunks of a tar stream span files, and a content-defined chunk's
 * end depends on every byte since the previous cut. So the reuse is at chunk level, where the
 * chunker resynchronises. The chunker's state right after a cut is empty (`Chunker.cut`): the
 * cuts that follow depend only on the bytes after it. Within a run of unchanged entries that were
 * also contiguous in the previous stream (a "copy" segment, new offset = old offset + delta):
 * - if the new stream has a cut at a position whose old counterpart was a cut too, every old
 *   chunk from there that lies entirely inside the segment is exactly the chunk a full read would
 *   cut now: its digest is appended, nothing is read;
 * - the bytes before that first common cut, and the tail after the last whole old chunk, are read
 *   and chunked as usual.
 * A stream that starts with unchanged entries is in sync at offset 0; after a changed file the
 * chunker usually meets an old cut within a chunk or two. Nothing else is trusted: the chunks are
 * exactly those of a full read, so the index is the same, byte for byte.
 */
import type { DynamicIndexReader } from '../datastore/index.js';
import type { ReusablePiece } from '../pxar/index.js';
import { ChunkAssembler, Chunker } from './chunker.js';
import { treeBytes, type TreePlan } from './tar-archive.js';

/** A chunk of the previous index appended by digest, without its bytes. */
export interface ReusedChunk {
  digest: Buffer;
  size: number;
}

/** What the previous backup of the tree left: its index, and where each entry was in its stream. */
export interface PreviousTree {
  index: DynamicIndexReader;
  /** Entry key → [start, length] in the previous stream. */
  entries: Map<string, [number, number]>;
}

/** Every piece read is copied into the chunk at once (`feed`): the read block can be reused. */
const READ = { reuseBlock: true };

interface Segment {
  newStart: number;
  newEnd: number;
  /** Old offset of `newStart` for a copy segment; -1 for bytes that must be read. */
  oldStart: number;
}

/** The plan as read segments and copy segments (maximal runs of contiguous unchanged entries). */
function segments(plan: TreePlan, prev: PreviousTree | undefined): Segment[] {
  const out: Segment[] = [];
  for (const e of plan.entries) {
    const old = e.key ? prev?.entries.get(e.key) : undefined;
    const oldStart = old && old[1] === e.length ? old[0] : -1;
    const last = out.at(-1);
    if (
      last &&
      ((oldStart < 0 && last.oldStart < 0) ||
        (oldStart >= 0 && last.oldStart >= 0 && last.oldStart + (last.newEnd - last.newStart) === oldStart))
    ) {
      last.newEnd = e.start + e.length;
      continue;
    }
    out.push({ newStart: e.start, newEnd: e.start + e.length, oldStart });
  }
  return out;
}

/**
 * The chunks of the plan's tar stream, in order: Buffers to hash and upload, or chunks of the
 * previous index (by digest) where unchanged entries make them provably identical. `avg` is the
 * chunker's average size, which must be the previous backup's. Without `prev`, a plain full read.
 */
export function treeChunks(
  plan: TreePlan,
  prev: PreviousTree | undefined,
  avg: number,
): AsyncGenerator<Buffer | ReusedChunk> {
  async function* pieces(): AsyncGenerator<Buffer | ReusablePiece> {
    for (const seg of segments(plan, prev)) {
      if (seg.oldStart < 0) {
        yield* treeBytes(plan, seg.newStart, seg.newEnd, READ);
        continue;
      }
      yield {
        oldStart: seg.oldStart,
        length: seg.newEnd - seg.newStart,
        read: (from, to) => treeBytes(plan, seg.newStart + from, seg.newStart + to, READ),
      };
    }
  }
  return pieceChunks(pieces(), prev?.index, avg);
}

/**
 * The chunks of a stream given as pieces, in order: bytes to chunk, and reusable pieces whose
 * bytes equal a range of the previous stream (unchanged entries, a run of them for tar, one
 * file's contents or a run of unchanged files for pxar). A reusable piece is read only up to the
 * first position where the chunker's cut meets an old cut; from there every old chunk lying wholly
 * inside the piece is appended by digest. The bytes after the last such chunk are read only when
 * the next piece does not continue the previous stream right there: a run passed on in parts (as
 * pxar's runs are, so that the walk need not reach a run's end before its chunks go out) costs no
 * read at the joins. Bytes must be done with (copied) once the next piece is asked for; a reusable
 * piece's `read` must still work then. Without `prevIndex` every piece is read.
 */
export async function* pieceChunks(
  pieces: AsyncIterable<Buffer | ReusablePiece>,
  prevIndex: DynamicIndexReader | undefined,
  avg: number,
): AsyncGenerator<Buffer | ReusedChunk> {
  const chunker = new Chunker(avg);
  const chunk = new ChunkAssembler();
  /** New-stream offset of the next byte the chunker sees. */
  let pos = 0;
  /** New-stream offset where the next piece starts (ahead of `pos` by the tail's bytes). */
  let streamPos = 0;
  const add = (b: Buffer) => {
    chunk.add(b);
    pos += b.length;
  };
  /**
   * Chunk `piece`; `stop(cutPos)` is asked after every cut and ends the piece there when true.
   * Returns the chunks cut and whether it stopped.
   */
  const feed = (
    piece: Buffer,
    stop?: (cutPos: number) => boolean,
  ): { chunks: Buffer[]; stopped: boolean } => {
    const chunks: Buffer[] = [];
    let from = 0;
    while (from < piece.length) {
      const cut = chunker.scan(piece, from);
      if (cut < 0) {
        add(piece.subarray(from));
        break;
      }
      add(piece.subarray(from, cut));
      chunks.push(chunk.take());
      from = cut;
      if (stop?.(pos)) return { chunks, stopped: true };
    }
    return { chunks, stopped: false };
  };

  let oldStarts: Map<number, number> | undefined;
  if (prevIndex) {
    oldStarts = new Map();
    for (let i = 0; i < prevIndex.count; i++) oldStarts.set(prevIndex.chunkRange(i).start, i);
  }

  /**
   * In step with the previous stream at `pos`: the chunker is empty and old chunk `next` starts
   * at `pos - delta`. `parts` are the reusable pieces (or their ends) from `pos` to `streamPos`,
   * not yet read: they are read only if the next piece does not continue at old offset
   * `streamPos - delta`.
   */
  let tail:
    { parts: Array<{ piece: ReusablePiece; newStart: number }>; delta: number; next: number } | undefined;

  /** Append the old chunks lying wholly inside the tail by digest; drop the parts passed. */
  function* takeInStep(): Generator<ReusedChunk> {
    const t = tail!;
    const oldEnd = streamPos - t.delta;
    for (; t.next < prevIndex!.count; t.next++) {
      const { start, end } = prevIndex!.chunkRange(t.next);
      if (end > oldEnd) break;
      yield { digest: prevIndex!.digest(t.next), size: end - start };
      pos = end + t.delta;
    }
    while (t.parts.length > 0 && t.parts[0]!.newStart + t.parts[0]!.piece.length <= pos) t.parts.shift();
  }

  /** Read and chunk the tail's bytes: the stream goes on elsewhere than the old one did. */
  async function* readTail(): AsyncGenerator<Buffer> {
    const t = tail!;
    tail = undefined;
    for (const { piece, newStart } of t.parts)
      for await (const b of piece.read(Math.max(0, pos - newStart), piece.length)) yield* feed(b).chunks;
  }

  for await (const piece of pieces) {
    const continues = !Buffer.isBuffer(piece) && tail && piece.oldStart === streamPos - tail.delta;
    if (tail && !continues) yield* readTail();
    const segStart = streamPos;
    streamPos += piece.length;
    if (Buffer.isBuffer(piece)) {
      yield* feed(piece).chunks;
      continue;
    }
    if (!prevIndex || !oldStarts) {
      for await (const b of piece.read(0, piece.length)) yield* feed(b).chunks;
      continue;
    }
    if (continues) {
      tail!.parts.push({ piece, newStart: segStart });
      yield* takeInStep();
      continue;
    }
    const segEnd = streamPos;
    const delta = segStart - piece.oldStart;
    /** An old chunk starts at the counterpart of new offset `p`, inside this piece. */
    const inSync = (p: number) => p < segEnd && oldStarts.has(p - delta);
    let synced = chunk.length === 0 && inSync(pos);
    if (!synced) {
      for await (const b of piece.read(pos - segStart, piece.length)) {
        const r = feed(b, inSync);
        yield* r.chunks;
        if (r.stopped) {
          synced = true;
          break;
        }
      }
    }
    if (!synced) continue;
    tail = { parts: [{ piece, newStart: segStart }], delta, next: oldStarts.get(pos - delta)! };
    yield* takeInStep();
  }
  if (tail) yield* readTail();
  if (chunk.length > 0) yield chunk.take();
}
