/**
 * A directory tree as the byte stream of a pxar archive, for the upload pipeline
 * (`BackupWriter.uploadStream`), the way `proxmox-backup-client backup NAME.pxar:DIR` produces
 * it: the encoder walks the tree and writes into a bounded buffer the chunker reads from, so the
 * walk waits while the uploads catch up and memory stays bounded whatever the tree's size.
 */
import { PassThrough } from 'node:stream';
import { createArchive, writableSink, type CreateArchiveResult, type TreeCatalog } from '../pxar/index.js';
import type { ExcludeMatcher } from './tar-archive.js';

/** Bytes the encoder may run ahead of the chunker. */
const AHEAD = 8 * 1024 * 1024;

export interface PxarStreamOptions {
  exclude?: ExcludeMatcher;
  /** Records the tree under the directory `archive` (the snapshot's `catalog.pcat1`). */
  catalog?: TreeCatalog;
  /** The server archive name (`root.pxar.didx`): the catalog's top-level directory for this tree. */
  archive: string;
  onWarning?: (message: string) => void;
}

export interface PxarStream {
  /** The archive's bytes, in order; iterating it drives the walk. */
  bytes: AsyncIterable<Buffer>;
  /** Settles when the archive is complete (members and size), or with the walk's error. */
  done: Promise<CreateArchiveResult>;
}

/** Archive `root` as pxar. An error of the walk ends `bytes` with that error. */
export function pxarStream(root: string, opts: PxarStreamOptions): PxarStream {
  // The encoder hands over fresh buffers (it never reuses one after a write), so queueing
  // them in the PassThrough is safe.
  const pipe = new PassThrough({ highWaterMark: AHEAD });
  const done = createArchive(root, writableSink(pipe), {
    exclude: opts.exclude,
    catalog: opts.catalog,
    catalogName: opts.archive,
    onWarning: opts.onWarning,
  }).then(
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
  return { bytes: pipe, done };
}
