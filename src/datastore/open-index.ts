/**
 * Opening an index of either kind by its file name. It sits above `fixed-index.ts` and
 * `dynamic-index.ts` (which share `index-file.ts`), so GC and verify need not know the kinds.
 */
import { ERR_NOT_AN_INDEX } from '../errors.js';
import { DynamicIndexReader } from './dynamic-index.js';
import { FixedIndexReader } from './fixed-index.js';
import { isIndexFileName, type ChunkIndexReader } from './index-file.js';

/** Open a `.fidx` or `.didx` by its extension. */
export function openIndexReader(path: string, opts: { verifyCsum?: boolean } = {}): ChunkIndexReader {
  const kind = isIndexFileName(path);
  if (kind === 'fixed') return FixedIndexReader.open(path, opts);
  if (kind === 'dynamic') return DynamicIndexReader.open(path, opts);
  throw ERR_NOT_AN_INDEX(path);
}
