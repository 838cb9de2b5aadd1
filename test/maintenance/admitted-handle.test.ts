/**
 * What an admitted handle lets its holder do (design §2): a read admission gets a read-only
 * datastore, a write admission the writing methods, and neither a path. The type checks here are
 * compile-time (`@ts-expect-error` fails `tsc` once the method becomes reachable); the runtime
 * checks show the narrowing callers use when the class is only known at run time.
 */
import { afterEach, beforeEach, test } from 'node:test';
import assert from 'node:assert/strict';
import { BackupNamespace } from '../../src/datastore/backup-info.js';
import type { DatastoreHandle } from '../../src/maintenance/datastore-access.js';
import { makeInstance, type TestInstance } from '../helpers/instance.js';

let inst: TestInstance;

beforeEach(async () => {
  inst = makeInstance();
  await inst.createStore('store1');
});
afterEach(() => inst.cleanup());

test('a read admission offers no writing method and no path; a write admission writes', async () => {
  const reader = await inst.access.lookupDatastore('store1', 'read', { kind: 'restore' });
  try {
    const ns = BackupNamespace.parse('team');
    // @ts-expect-error a read admission cannot create a namespace
    assert.equal(typeof reader.datastore.createNamespace, 'function'); // the class still has it
    // @ts-expect-error nor insert a chunk
    void reader.datastore.chunks.insert;
    // @ts-expect-error nor run GC
    void reader.datastore.garbageCollection;
    // @ts-expect-error no path to join on
    void reader.datastore.basePath;
    assert.equal(reader.datastore.namespaceExists(ns), false);
    assert.equal(reader.datastore.gcStatus(), undefined);

    const writer = await inst.access.lookupDatastore('store1', 'ingest', { kind: 'backup' });
    try {
      await writer.datastore.createNamespace(ns);
      // @ts-expect-error a write admission has no path either
      void writer.datastore.basePath;
    } finally {
      await writer.release();
    }
    assert.equal(reader.datastore.namespaceExists(ns), true);
  } finally {
    await reader.release();
  }
});

test('a handle of a class known only at run time writes only once narrowed to write', async () => {
  for (const op of ['read', 'ingest'] as const) {
    const handle: DatastoreHandle = await inst.access.lookupDatastore('store1', op, { kind: 'test' });
    try {
      // @ts-expect-error not before narrowing
      void handle.datastore.createNamespace;
      if (handle.operation === 'ingest') await handle.datastore.createNamespace(BackupNamespace.parse(op));
      assert.equal(handle.datastore.namespaceExists(BackupNamespace.parse(op)), op === 'ingest');
    } finally {
      await handle.release();
    }
  }
});
