/**
 * File-level restore as the API shows it (PBS `pbs-api-types` `ArchiveEntry`), for the server's
 * `admin/datastore/{store}/catalog`, the web UI's file browser and the tests. Depends on nothing,
 * so www/ imports it as is.
 */

/** One member of a directory listed by `catalog`; `filepath` goes back into the API as it is. */
export interface ArchiveEntry {
  /** Base64 of the full path, including the name (`root.pxar.didx/etc/hosts`). */
  filepath: string;
  /** The name, for display. */
  text: string;
  /** Catalog type: d, f, l (symlink), h (hard link), b, c (devices), p (FIFO), s (socket). */
  type: string;
  /** Not a directory. */
  leaf: boolean;
  /** Files only. */
  size?: number;
  /** Modification time in epoch seconds; files only. */
  mtime?: number;
}
