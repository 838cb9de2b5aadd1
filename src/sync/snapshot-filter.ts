/**
 * PBS 4's `verified-only` and `encrypted-only` sync flags (`src/server/sync.rs`): which snapshots
 * a pull or a push leaves out. Checked twice, as PBS does: on the source's listing, where a
 * snapshot left out is neither synced nor counted as present for `remove-vanished`; and again on
 * the manifest actually read, which may have changed since the listing.
 */
import { CLIENT_LOG_BLOB_NAME, MANIFEST_BLOB_NAME, type BackupManifest } from '../datastore/index.js';

export interface SnapshotFlags {
  /** Only snapshots whose last verification succeeded. */
  verifiedOnly?: boolean;
  /** Only snapshots whose every archive is encrypted (and whose manifest is signed). */
  encryptedOnly?: boolean;
}

/** A snapshot as a sync source lists it (the fields of PBS's `SnapshotListItem` the flags read). */
export interface ListedSnapshot {
  time: number;
  /** Still being written: never synced. */
  inProgress: boolean;
  /** The state of its last verification (`ok`, `failed`); absent when never verified. */
  verifyState?: string;
  /** Its files with their crypt mode, the manifest itself included. */
  files: ReadonlyArray<{ filename: string; cryptMode?: string }>;
}

/**
 * PBS `exclude_not_verified_or_encrypted`: whether the listing already rules `s` out. A listing
 * without the manifest (one that could not be read) is not known to be encrypted.
 */
export function excludedByListing(s: ListedSnapshot, flags: SnapshotFlags): boolean {
  if (flags.verifiedOnly && s.verifyState !== 'ok') return true;
  return (
    !!flags.encryptedOnly &&
    !(
      s.files.some((f) => f.filename === MANIFEST_BLOB_NAME) &&
      s.files.every((f) =>
        f.filename === MANIFEST_BLOB_NAME
          ? f.cryptMode === 'sign-only'
          : f.filename === CLIENT_LOG_BLOB_NAME || f.cryptMode === 'encrypt',
      )
    )
  );
}

/**
 * The finished snapshots of `listed` the flags keep, in their order; how many they left out is
 * logged for `group` (PBS logs only the manifest check's skips; the operator sees why here).
 */
export function selectListed<T extends ListedSnapshot>(
  listed: readonly T[],
  flags: SnapshotFlags,
  group: string,
  log: (line: string) => void,
): T[] {
  const finished = listed.filter((s) => !s.inProgress);
  const kept = finished.filter((s) => !excludedByListing(s, flags));
  if (kept.length < finished.length)
    log(
      `${group}: skipped: ${finished.length - kept.length} snapshot(s) - not verified or not encrypted ` +
        '(verified-only/encrypted-only)',
    );
  return kept;
}

/** PBS `ignore_not_verified_or_encrypted`: whether the manifest read rules its snapshot out. */
export function excludedByManifest(m: BackupManifest, flags: SnapshotFlags): boolean {
  if (flags.verifiedOnly && m.unprotected.verify_state?.state !== 'ok') return true;
  return !!flags.encryptedOnly && !m.files.every((f) => f['crypt-mode'] === 'encrypt');
}

/** The log line of a snapshot the manifest read ruled out (PBS's words). */
export const FILTERED_OUT = 'skipped, did not match verified-only/encrypted-only filter';
