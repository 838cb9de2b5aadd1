/**
 * Tests that build fixtures below the datastore API (a chunk file written by hand, a snapshot
 * directory filled without the backup protocol) need the open datastore behind an admitted
 * handle, which the handle's types deliberately hide (no paths, read-only for read admissions).
 */
import assert from 'node:assert/strict';
import { Datastore, type ReadonlyDatastore } from '../../src/datastore/datastore.js';

/** The open datastore behind a handle's `datastore`, with its paths. */
export function datastoreInternals(ds: ReadonlyDatastore): Datastore {
  assert.ok(ds instanceof Datastore, 'an admitted handle holds the datastore class');
  return ds;
}
