/**
 * A directory tree as the byte stream of a pxar archive, for the upload pipeline
 * (`BackupWriter.uploadStream`), the way `proxmox-backup-client backup NAME.pxar:DIR` produces
 * it: the encoder walks the tree and writes into a bounded buffer the chunker reads from, so the
 * walk waits while the uploads catch up and memory stays bounded whatever the tree's size.
 */
import { createHash } from 'node:crypto';
import type { BigIntStats } from 'node:fs';
import { PassThrough } from 'node:stream';
import {
  createArchive,
  writableSink,
  type CreateArchiveResult,
  type ReusablePiece,
  type TreeCatalog,
} from '../pxar/index.js';
import { ENTRY_KEY_HEX, RACY_MARGIN_MS, type ExcludeMatcher } from './tar-archive.js';

/**
 * Pieces the encoder may run ahead of the chunker: payload reads and batches are at most 1 MiB,
 * so about 8 MiB.
 */
const AHEAD = 8;

/** A span of the archive for the tree cache: a file's contents by its key, or other bytes (''). */
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
   * The previous archive of this tree, key → [start, length] of each unchanged file's contents
   * (the tree cache's spans): those files come as reusable pieces instead of bytes.
   */
  previous?: ReadonlyMap<string, readonly [number, number]>;
}

export interface PxarStream {
  /** The archive in order: bytes, and reusable pieces of the previous one; iterating it drives the walk. */
  bytes: AsyncIterable<Buffer | ReusablePiece>;
  /** Settles when the archive is complete (members and size), or with the walk's error. */
  done: Promise<CreateArchiveResult>;
  /** Once `done`: the archive as spans, every large file's contents by its key (for the next backup). */
  spans(): ArchiveSpan[];
}

/**
 * The key of a file's contents: a digest of its path and metadata, so that an equal key means
 * equal contents (writing a file moves its ctime), or '' when its ctime is so recent that a
 * second write in the same tick could go unseen (as the tar path's entry keys, tar-archive.ts).
 */
function payloadKeyer(): (rel: Buffer, st: BigIntStats) => string {
  const racyAfterNs = BigInt(Date.now() - RACY_MARGIN_MS) * 1_000_000n;
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

/** Archive `root` as pxar. An error of the walk ends `bytes` with that error. */
export function pxarStream(root: string, opts: PxarStreamOptions): PxarStream {
  // The encoder hands over fresh buffers (it never reuses one after a write), so queueing
  // them in the PassThrough is safe; an object-mode stream passes reusable pieces along too.
  const pipe = new PassThrough({ objectMode: true, highWaterMark: AHEAD });
  const spans: ArchiveSpan[] = [];
  let cursor = 0;
  let size = 0;
  const done = createArchive(root, writableSink(pipe), {
    exclude: opts.exclude,
    catalog: opts.catalog,
    catalogName: opts.archive,
    onWarning: opts.onWarning,
    reuse: {
      key: payloadKeyer(),
      previous: opts.previous,
      onPayload: (key, start, length) => {
        if (start > cursor) spans.push({ key: '', length: start - cursor });
        spans.push({ key, length });
        cursor = start + length;
      },
    },
  }).then(
    (result) => {
      size = result.size;
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
    bytes: pipe,
    done,
    spans: () => (size > cursor ? [...spans, { key: '', length: size - cursor }] : spans),
  };
}
