/**
 * A directory tree as the byte stream of a pxar archive, for the upload pipeline
 * (`BackupWriter.uploadStream`), the way `proxmox-backup-client backup NAME.pxar:DIR` produces
 * it: the encoder walks the tree and writes into a bounded buffer the chunker reads from, so the
 * walk waits while the uploads catch up and memory stays bounded whatever the tree's size.
 */
import { createHash, type Hash } from 'node:crypto';
import { PassThrough } from 'node:stream';
// Direct module imports, not the pxar/index.js barrel: a backup then does not load the decoder,
// extractor and accessor (less module loading at every client start).
import {
  createArchive,
  type CreateArchiveOptions,
  type CreateArchiveResult,
  type MemberStats,
  type TreeCatalog,
} from '../pxar/create.js';
import type { LayoutObserver } from '../pxar/encoder.js';
import { readParts, writableSink, type ReusablePiece } from '../pxar/io.js';
import { ENTRY_KEY_HEX, RACY_MARGIN_MS, type ExcludeMatcher } from './tar-archive.js';
import { directoryReuse, type DirectorySpan } from './directory-reuse.js';
import type { PreviousPxarLayout } from './tree-cache.js';
import { WALK_AHEAD_AFTER, walkAheadAfter } from './walk-ahead.js';
import type { RecordedStats } from './walk-stats.js';

/**
 * Pieces the encoder may run ahead of the chunker: payload reads and batches are at most 1 MiB,
 * so about 8 MiB.
 */
const AHEAD = 8;

/**
 * A span of the archive for the tree cache, in order: a file's contents by its metadata key, or
 * the items between two files' contents by `itemsKey` ('' where nothing may be reused).
 */
export interface ArchiveSpan {
  key: string;
  length: number;
}

export interface PxarStreamOptions {
  exclude?: ExcludeMatcher;
  /** Records the tree under the directory `archive` (the snapshot's `catalog.pcat1`). */
  catalog?: TreeCatalog;
  /** The server archive name (`root.pxar.didx`): the catalog's top-level directory for this tree. */
  archive: string;
  onWarning?: (message: string) => void;
  /**
   * The previous archive of this tree, key → [start, length] of its spans (the tree cache's):
   * unchanged files come as reusable pieces instead of bytes, joined with the items between them
   * into runs where those are the previous archive's bytes too.
   */
  previous?: ReadonlyMap<string, readonly [number, number]>;
  /** Each member's lstat before it is archived, in walk order (`CreateArchiveOptions.onMember`). */
  onMember?: (relPath: Buffer, stats: MemberStats) => void;
  /** Members' lstats the metadata walk took (walk-stats.ts): not taken again. */
  knownStats?: RecordedStats;
  /**
   * The previous archive's spans and keyed directories (the tree cache's): a directory whose
   * members are as they were then is taken whole (directory-reuse.ts).
   */
  previousLayout?: PreviousPxarLayout;
  /** The tree's extended attributes, when their read was started earlier (`readArchiveXattrs`). */
  xattrs?: CreateArchiveOptions['xattrs'];
}

export interface PxarStream {
  /** The archive in order: bytes, and reusable pieces of the previous one; iterating it drives the walk. */
  bytes: AsyncIterable<Buffer | ReusablePiece>;
  /** Settles when the archive is complete (members and size), or with the walk's error. */
  done: Promise<CreateArchiveResult>;
  /** Once `done`: the archive as spans, for the next backup (`previous`). */
  spans(): ArchiveSpan[];
  /** Once `done`: where its keyed directories lie, for the next backup (`previousLayout`). */
  directories(): DirectorySpan[];
}

/**
 * The key of a file's contents: a digest of its path and metadata, so that an equal key means
 * equal contents (writing a file moves its ctime), or '' when its ctime is so recent that a
 * second write in the same tick could go unseen (as the tar path's entry keys, tar-archive.ts).
 */
function payloadKeyer(racyAfterNs: bigint): (rel: Buffer, st: MemberStats) => string {
  return (rel, st) => {
    if (st.ctimeNs >= racyAfterNs) return '';
    const fields = [
      rel.toString('base64'),
      st.mode,
      st.uid,
      st.gid,
      st.size,
      st.mtimeNs,
      st.ctimeNs,
      st.ino,
      st.dev,
    ];
    return createHash('sha256')
      .update(`pxar payload\n${fields.map(String).join(' ')}`)
      .digest('hex')
      .slice(0, ENTRY_KEY_HEX);
  };
}

/**
 * The key of the items that follow the contents keyed `after` ('' for none: the archive's start,
 * or contents that may not be reused) is the digest of this hash updated with the items
 * (`itemsDigest`). Equal keys mean equal bytes; chaining them to the file before keeps the keys of
 * a tree's many alike item runs (the same headers in other directories) apart, so that the map of
 * an archive's spans holds each.
 */
function itemsHash(after: string): Hash {
  return createHash('sha256').update(`pxar items after ${after}\n`);
}

function itemsDigest(hash: Hash): string {
  return hash.digest('hex').slice(0, ENTRY_KEY_HEX);
}

/**
 * Records an archive's spans as the encoder lays it out: the items between files' contents by
 * their key (`itemsHash`, `itemsDigest`), each file's contents by its key once the walk confirms
 * it (`onPayload`), else ''.
 */
class SpanRecorder implements LayoutObserver {
  readonly spans: ArchiveSpan[] = [];
  readonly directories: DirectorySpan[] = [];
  private pos = 0;
  private openItems: Hash | undefined;
  private itemBytes = 0;
  /** The key of the contents the current items follow. */
  private after = '';
  /** Contents laid out so far, and the items right before the last ones (`Gap`). */
  private contentsSeen = 0;
  lastGap: Gap = { keys: [], seq: 0 };
  /** Items spans closed since the last contents (at directories' starts and ends). */
  private closed: string[] = [];

  constructor(private readonly previous?: PreviousPxarLayout) {}

  items(b: Buffer): void {
    this.openItems ??= itemsHash(this.after);
    this.openItems.update(b);
    this.itemBytes += b.length;
  }

  contents(length: number): void {
    this.lastGap = { keys: this.gapKeys(), seq: ++this.contentsSeen };
    this.spans.push({ key: '', length });
    this.pos += length;
    this.after = '';
  }

  /**
   * A directory taken whole: the previous archive's spans and directories inside it, moved to
   * where it lies now. A span it cuts through has no key (its bytes outside are not these).
   */
  reused(piece: ReusablePiece): void {
    // a piece like a file's contents: joinRuns may join it to the run before
    this.lastGap = { keys: this.gapKeys(), seq: ++this.contentsSeen };
    const { spans, dirList } = this.previous!;
    const from = piece.oldStart;
    const to = from + piece.length;
    const shift = this.pos - from;
    for (let i = lastStartingAtOrBefore(spans, from); i < spans.length && spans[i]!.start < to; i++) {
      const s = spans[i]!;
      const a = Math.max(s.start, from);
      const b = Math.min(s.start + s.length, to);
      if (a < b)
        this.spans.push({ key: a === s.start && b === s.start + s.length ? s.key : '', length: b - a });
    }
    for (let i = lastStartingAtOrBefore(dirList, from); i < dirList.length && dirList[i]!.start < to; i++) {
      const d = dirList[i]!;
      if (d.start >= from && d.start + d.length <= to)
        this.directories.push({ key: d.key, start: d.start + shift, length: d.length });
    }
    this.pos += piece.length;
    this.after = piece.key ?? '';
  }

  /** The items after the last contents, once the archive is complete. */
  trailingGap(): Gap {
    return { keys: this.gapKeys(), seq: this.contentsSeen + 1 };
  }

  /**
   * A directory starts or ends (walked, not taken whole): the items span ends there, so that the
   * spans of a directory taken whole next time start and end with it, keyed, and the items after
   * it are keyed as they will be then: after `after`, its key ('' where it has none).
   */
  cut(after?: string): void {
    const key = this.closeItems();
    if (key) this.closed.push(key);
    if (after !== undefined) this.after = after;
  }

  /** The keys of the items since the last contents, closing the open ones. */
  private gapKeys(): string[] {
    const key = this.closeItems();
    const keys = key ? [...this.closed, key] : this.closed;
    this.closed = [];
    return keys;
  }

  /** The file whose contents are [start, start + length) has the key `key`. */
  onPayload(key: string, start: number, length: number): void {
    const last = this.spans.at(-1);
    if (last?.key !== '' || last.length !== length || this.pos !== start + length) return;
    last.key = key;
    this.after = key;
  }

  finish(): ArchiveSpan[] {
    this.closeItems();
    return this.spans;
  }

  /** Close the open items' span; its key ('' when there were none). */
  private closeItems(): string {
    if (this.itemBytes === 0) return '';
    const key = itemsDigest(this.openItems!);
    this.spans.push({ key, length: this.itemBytes });
    this.pos += this.itemBytes;
    this.openItems = undefined;
    this.itemBytes = 0;
    return key;
  }
}

/**
 * The items between two contents of the archive, as the span recorder keyed them: `seq` numbers
 * the contents they come before (1 for the first; the archive's end counts as one more), so that
 * two pieces with consecutive numbers have only items between them, and `keys` are those items'
 * spans' keys, in order (more than one where a directory started or ended between; none for no
 * items). joinRuns takes them instead of hashing the same bytes again.
 */
interface Gap {
  keys: string[];
  seq: number;
}

/** The index of the last of `list` (in order of start) that starts at or before `at` (0 if none). */
function lastStartingAtOrBefore(list: ReadonlyArray<{ start: number }>, at: number): number {
  let lo = 0;
  let hi = list.length - 1;
  while (lo < hi) {
    const mid = (lo + hi + 1) >> 1;
    if (list[mid]!.start <= at) lo = mid;
    else hi = mid - 1;
  }
  return lo;
}

/** Items a run waits on before they are given up as not the previous archive's (usually a few headers). */
const MAX_GAP = 1024 * 1024;
/**
 * A run is passed on in parts of about this length: the chunks of the first part go out while the
 * walk goes on (the reuse carries on over the joins, tree-reuse.ts), and the items held stay few.
 */
const RUN_PART = 1024 * 1024;

/** Reusable pieces and items between them, equal to `length` bytes at `oldStart` of the previous archive. */
interface Run {
  oldStart: number;
  length: number;
  parts: Array<Buffer | ReusablePiece>;
  /** The key of the last contents in the run ('' before any). */
  after: string;
  /** The `Gap.seq` of the last contents in the run (0 before any). */
  seq: number;
}

function runPiece(run: Run): ReusablePiece {
  const { parts } = run;
  if (parts.length === 1 && !Buffer.isBuffer(parts[0])) return parts[0]!;
  return {
    key: run.after,
    oldStart: run.oldStart,
    length: run.length,
    read: (from, to) => readParts(parts, from, to),
  };
}

/**
 * The archive's pieces with unchanged files joined into runs: a reusable piece, the items after
 * it and the next reusable piece become one piece when those items are, by their key, the bytes
 * that followed the same file in the previous archive and the next file's contents came right
 * after them there. A run of a thousand unchanged small files is then one piece whose old chunks
 * are taken whole (tree-reuse.ts), where alone each would be read, being smaller than a chunk.
 */
async function* joinRuns(
  pieces: AsyncIterable<Buffer | ReusablePiece>,
  previous: ReadonlyMap<string, readonly [number, number]> | undefined,
  gaps: { before: (piece: ReusablePiece) => Gap | undefined; trailing: () => Gap },
): AsyncGenerator<Buffer | ReusablePiece> {
  if (!previous) return yield* pieces;
  /** The items after the run (or all items when none: the archive's start counts as a run). */
  let run: Run | undefined = { oldStart: 0, length: 0, parts: [], after: '', seq: 0 };
  let gap: Buffer[] = [];
  let gapBytes = 0;
  /**
   * Whether `gap` follows `run` in the previous archive, and the contents at `next` there follow
   * it; `before` is the span recorder's record of the items before the next contents (or the end).
   */
  const gapFollows = (r: Run, before: Gap | undefined, next?: number): boolean => {
    const end = r.oldStart + r.length;
    if (gapBytes === 0) return next === undefined || next === end;
    // only items between (no contents that are not reused), the span recorder's key for them
    if (before === undefined || before.seq !== r.seq + 1 || before.keys.length === 0) return false;
    let at = end;
    for (const key of before.keys) {
      const old = previous.get(key);
      if (old?.[0] !== at) return false;
      at += old[1];
    }
    return at === end + gapBytes && (next === undefined || next === at);
  };
  const join = (r: Run) => {
    r.parts.push(...gap);
    r.length += gapBytes;
    gap = [];
    gapBytes = 0;
  };
  function* endRun(): Generator<Buffer | ReusablePiece> {
    if (run && run.length > 0) yield runPiece(run);
    run = undefined;
    yield* gap;
    gap = [];
    gapBytes = 0;
  }
  for await (const p of pieces) {
    if (Buffer.isBuffer(p)) {
      if (!run) yield p;
      else {
        gap.push(p);
        gapBytes += p.length;
        if (gapBytes > MAX_GAP) yield* endRun();
      }
      continue;
    }
    const before = gaps.before(p);
    if (run && gapFollows(run, before, p.oldStart)) join(run);
    else yield* endRun();
    run ??= { oldStart: p.oldStart, length: 0, parts: [], after: '', seq: 0 };
    run.parts.push(p);
    run.length += p.length;
    run.after = p.key ?? '';
    run.seq = before?.seq ?? -1;
    if (run.length >= RUN_PART) {
      yield runPiece(run);
      run = { oldStart: run.oldStart + run.length, length: 0, parts: [], after: run.after, seq: run.seq };
    }
  }
  if (run && gapFollows(run, gaps.trailing())) join(run);
  yield* endRun();
}

/** Archive `root` as pxar. An error of the walk ends `bytes` with that error. */
export function pxarStream(root: string, opts: PxarStreamOptions): PxarStream {
  // The encoder hands over fresh buffers (it never reuses one after a write), so queueing
  // them in the PassThrough (and in a run) is safe; an object-mode stream passes reusable pieces along too.
  const pipe = new PassThrough({ objectMode: true, highWaterMark: AHEAD });
  const recorder = new SpanRecorder(opts.previousLayout);
  const racyAfterNs = BigInt(Date.now() - RACY_MARGIN_MS) * 1_000_000n;
  // Each reusable piece with the items before it as the recorder keyed them: the pipe runs ahead
  // of joinRuns, so the recorder's state is taken as the piece is written (right after the
  // encoder laid out its contents).
  const gapBefore = new WeakMap<ReusablePiece, Gap>();
  const sink = writableSink(pipe);
  // A walk that reads every file (nothing to reuse, no metadata walk before it) has its lstats
  // and small files read ahead by a thread once it is past the first entries; not with an
  // exclude function of unknown patterns.
  const ahead =
    !opts.previous && !opts.knownStats && (!opts.exclude || opts.exclude.patterns)
      ? walkAheadAfter(WALK_AHEAD_AFTER, root, opts.exclude?.patterns)
      : undefined;
  const done = createArchive(
    root,
    {
      write: (b) => sink.write(b),
      writeReusable: (piece) => {
        gapBefore.set(piece, recorder.lastGap);
        return sink.writeReusable!(piece);
      },
    },
    {
      exclude: opts.exclude,
      catalog: opts.catalog,
      catalogName: opts.archive,
      onWarning: opts.onWarning,
      onMember: opts.onMember,
      knownStats: opts.knownStats,
      ahead,
      xattrs: opts.xattrs,
      reuse: {
        key: payloadKeyer(racyAfterNs),
        previous: opts.previous,
        onPayload: (key, start, length) => recorder.onPayload(key, start, length),
        layout: recorder,
        directories: directoryReuse({
          racyAfterNs,
          recorded: opts.knownStats,
          previous: opts.previousLayout?.dirs,
          onEnter: () => recorder.cut(),
          onLeave: (span) => {
            recorder.cut(span.key);
            if (span.key) recorder.directories.push(span);
          },
        }),
      },
    },
  )
    .finally(() => ahead?.close())
    .then(
      (result) => {
        pipe.end();
        return result;
      },
      (err: unknown) => {
        pipe.destroy(err as Error);
        throw err;
      },
    );
  // The failure reaches the caller through `bytes`; `done` is awaited only after a success.
  done.catch(() => {});
  return {
    bytes: joinRuns(pipe, opts.previous, {
      before: (piece) => gapBefore.get(piece),
      trailing: () => recorder.trailingGap(),
    }),
    done,
    spans: () => recorder.finish(),
    directories: () => recorder.directories,
  };
}
