/**
 * Where a datastore keeps a second copy of its backup tree's files (manifests, indexes, blobs,
 * owner and notes files, `.protected` markers): PBS 4's S3 datastores upload every such file to
 * `<store>/.cnt/<path relative to the datastore>` and keep the local directory as a cache
 * (`pbs-datastore/src/s3.rs`, `object_key_from_path`). A filesystem datastore has none.
 *
 * The backup tree code (backup-info.ts, snapshot-writer.ts, snapshot-files.ts, verify.ts) calls it
 * wherever it changes such a file, with paths relative to the datastore's base, so the bucket
 * holds what the cache holds: finished snapshots only once their manifest is uploaded (last), and
 * nothing of a deleted snapshot, group or namespace.
 */
export interface ContentMirror {
  /** Store `bytes` as the file `relPath` (replacing it). */
  put(relPath: string, bytes: Uint8Array): Promise<void>;
  /** Store the cache's file `relPath` as it is now. */
  putFile(relPath: string): Promise<void>;
  /** Remove the file `relPath` (nothing when it is not there). */
  delete(relPath: string): Promise<void>;
  /** Remove every file under the directory `relDir`. */
  deleteDir(relDir: string): Promise<void>;
  /**
   * Download every file into `targetDir` (the same relative paths; a namespace's `.namespace`
   * marker becomes its directory), for a refresh of the cache. `log` gets one line per file.
   */
  fetchAll(targetDir: string, log: (line: string) => void): Promise<number>;
}

/** PBS's marker object of a namespace (`NAMESPACE_MARKER_FILENAME`), so an empty one survives a refresh. */
export const NAMESPACE_MARKER_NAME = '.namespace';
