/**
 * The bound garbage collection protects (reference §7.6): the start of the oldest write
 * operation on a datastore in any process of the host (any host, with a cluster backend),
 * asked of the admission backend so that it works with every backend.
 */
import { oldestWriteOperation } from '../datastore/writer-registry.js';
import type { AdmissionBackend } from './admission-backend.js';

/**
 * Start (ms) of the oldest write operation on `store`, leaving out `ownId` (the GC's own
 * admission, which writes no chunks); undefined when no other writer runs.
 */
export async function oldestWriteStart(
  backend: Pick<AdmissionBackend, 'list'>,
  store: string,
  ownId: number,
): Promise<number | undefined> {
  return oldestWriteOperation(await backend.list(store), ownId);
}
