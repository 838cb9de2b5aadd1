/**
 * The datastore's public surface: all that code outside `src/datastore/` and `src/maintenance/`
 * may import from this folder, besides the pure codecs `data-blob.ts` and `digest.ts` (an ESLint
 * `no-restricted-imports` rule in eslint.config.js refuses every other module here).
 *
 * Nothing exported here opens a datastore or takes a path into one: the datastore itself is only
 * reachable through the handle `lookupDatastore` returns (maintenance.md §2), typed as the
 * read-only or writable view below (types only, so neither `Datastore.open` nor `create` can be
 * called from outside). The rest are names (namespace, group, snapshot), result types, and codecs
 * that go from bytes to values.
 */
import { DynamicIndexReader } from './dynamic-index.js';
import { FixedIndexReader } from './fixed-index.js';

export {
  BackupDir,
  BackupGroup,
  BackupNamespace,
  type DeleteGroupResult,
  type DeleteNamespaceResult,
  type SnapshotFile,
  type SnapshotInfo,
} from './backup-info.js';
export type {
  DatastoreCounts,
  DatastoreStatus,
  ReadonlyChunks,
  ReadonlyDatastore,
  WritableDatastore,
} from './datastore.js';
export { checkChunkBlob, type ChunkBackend, type InsertResult, type SyncLevel } from './chunk-backend.js';
export type { DatastoreLocks } from './datastore-locks.js';
export type { HeldLock, LockName, LockOptions, LockService } from './lock-service.js';
export { emptyGcStatus, type GarbageCollectionStatus } from './gc.js';
export {
  CLIENT_LOG_BLOB_NAME,
  CRYPT_MODES,
  MANIFEST_BLOB_NAME,
  canonicalJson,
  decodeManifest,
  encodeManifest,
  manifestCryptMode,
  manifestToJson,
  newManifest,
  parseManifestJson,
  signedManifestJson,
  type BackupManifest,
  type ChunkUploadStats,
  type CryptMode,
  type ManifestFile,
  type SnapshotVerifyState,
} from './manifest.js';
export {
  KEEP_OPTION_NAMES,
  computePrune,
  keepsSomething,
  validateKeepOptions,
  type KeepOptions,
  type PruneResult,
} from './prune.js';
export { createVerifyCache, type SnapshotVerifyResult, type VerifyCache } from './verify.js';
export { earliest, oldestWriteOperation, type WriterRegistration } from './writer-registry.js';
export type { FileContent } from './snapshot-files.js';
export type { SnapshotReader, SnapshotWriter } from './snapshot-writer.js';
export type { ChunkIndexReader, IndexKind } from './index-file.js';
export { IndexReadAt, type ArchiveReadAt } from './index-read-at.js';
export type { DynamicIndexReader, DynamicIndexWriter } from './dynamic-index.js';
export type { FixedIndexReader, FixedIndexWriter } from './fixed-index.js';

/** Parse a `.didx` held in memory (see `DynamicIndexReader.fromBuffer`); no file is opened. */
export function decodeDynamicIndex(
  bytes: Buffer,
  opts: { what?: string; verifyCsum?: boolean } = {},
): DynamicIndexReader {
  return DynamicIndexReader.fromBuffer(bytes, opts);
}

/** Parse a `.fidx` held in memory (see `FixedIndexReader.fromBuffer`); no file is opened. */
export function decodeFixedIndex(
  bytes: Buffer,
  opts: { what?: string; verifyCsum?: boolean } = {},
): FixedIndexReader {
  return FixedIndexReader.fromBuffer(bytes, opts);
}
