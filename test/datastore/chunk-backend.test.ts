/**
 * The chunk-backend contract, run against every backend: the filesystem one (PBS's `.chunks/`
 * layout) and the in-memory one. A new backend adds its harness here; the S3 backend's sits in
 * test/s3/s3-chunk-backend.test.ts, where the test run provides a Ceph cluster.
 */
import { mkdirSync, mkdtempSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { sweepVerdict } from '../../src/datastore/chunk-backend.js';
import { chunkFilePath, FilesystemChunkBackend } from '../../src/datastore/chunk-store.js';
import { MemoryChunkBackend } from '../../src/datastore/memory-chunk-backend.js';
import { chunkBackendConformance } from '../suites/chunk-backend-conformance.js';

chunkBackendConformance('filesystem', (t) => {
  // `.chunks` with only the subdirectories a test uses (prepare): all 65536 take seconds.
  const base = mkdtempSync(join(tmpdir(), 'stowage-cbc-'));
  mkdirSync(join(base, '.chunks'));
  writeFileSync(join(base, '.lock'), '');
  const backend = FilesystemChunkBackend.open(base, { syncLevel: 'filesystem' });
  t.after(() => {
    backend.closeSync();
    rmSync(base, { recursive: true, force: true });
  });
  const pathOf = (name: string) => join(base, '.chunks', name.slice(0, 4), name);
  return {
    backend,
    age(name, ageMs) {
      const at = (Date.now() - ageMs) / 1000;
      utimesSync(pathOf(name), at, at);
    },
    plant(name, bytes) {
      mkdirSync(dirname(pathOf(name)), { recursive: true });
      writeFileSync(pathOf(name), bytes);
    },
    prepare(digest) {
      mkdirSync(dirname(chunkFilePath(base, digest)), { recursive: true });
    },
  };
});

chunkBackendConformance('memory', () => {
  const backend = new MemoryChunkBackend();
  return {
    backend,
    age(name, ageMs) {
      if (!backend.setAtime(name, Date.now() - ageMs)) throw new Error(`no object '${name}'`);
    },
    plant(name, bytes) {
      backend.putRaw(name, bytes);
    },
  };
});

test('sweep decisions compare whole seconds, so a mark a few ms behind the cutoff still counts as after it', () => {
  const cutoffs = { minAtimeMs: 10_000, oldestWriterMs: 20_500 };
  assert.equal(sweepVerdict(9_999, cutoffs), 'remove');
  assert.equal(sweepVerdict(10_000, cutoffs), 'pending');
  assert.equal(sweepVerdict(19_999, cutoffs), 'pending');
  // atime 20.0 s and writer 20.5 s are the same second: on disk, not pending (as PBS)
  assert.equal(sweepVerdict(20_000, cutoffs), 'keep');
});
