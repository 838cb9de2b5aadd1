/** pxar archives and catalogs (PBS's file-level formats): the public surface of src/pxar/. */
export { PxarAccessor, type PxarDirectory, type PxarFoundEntry } from './accessor.js';
export {
  CATALOG_MAGIC,
  CatalogReader,
  CatalogWriter,
  catalogTypeOf,
  type CatalogEntry,
  type CatalogEntryType,
  type CatalogMatch,
} from './catalog.js';
export {
  createArchive,
  metadataFromStats,
  type CreateArchiveOptions,
  type CreateArchiveResult,
  type TreeCatalog,
} from './create.js';
export {
  compileRestorePatterns,
  extractPxar,
  type PxarEntrySource,
  type PxarExtractOptions,
  type PxarExtractResult,
  type SkippedMetadata,
} from './extract.js';
export { compileGlob, findByGlob, type GlobMatch } from './glob.js';
export { PxarDecoder, type DecoderOptions, type PxarEntry, type PxarEntryKind } from './decoder.js';
export { PxarEncoder, type LayoutObserver, type LinkOffset } from './encoder.js';
export {
  ACL_NO_MASK,
  MODE,
  emptyAcl,
  hashFilename,
  metadataOf,
  type PxarAcl,
  type PxarDevice,
  type PxarMetadata,
  type PxarStat,
  type PxarXattr,
} from './format.js';
export {
  bufferSink,
  readAtBuffer,
  readAtFile,
  writableSink,
  type PxarReadAt,
  type PxarSink,
  type ReusablePiece,
} from './io.js';
