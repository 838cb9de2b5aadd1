/**
 * The local admission backend (flock + SQLite) against the admission conformance suite, with
 * real holder processes sharing the instance's run dir.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { makeInstance } from '../helpers/instance.js';
import { HolderProcess } from '../helpers/holder-process.js';
import { admissionConformance } from '../suites/admission-conformance.js';

admissionConformance('local (flock + SQLite)', async () => {
  const inst = makeInstance('stowage-admission-');
  return {
    backend: inst.access.backend,
    async createStore(name) {
      await inst.createStore(name);
    },
    startHolder: () => new HolderProcess(inst.paths).start(),
    async cleanup() {
      inst.cleanup();
    },
  };
});

test('the local watch stays quiet while nothing changes', async () => {
  const inst = makeInstance('stowage-admission-');
  try {
    await inst.createStore('quiet');
    const watch = inst.access.backend.watch('quiet');
    const quiet = await Promise.race([
      watch.changed(),
      new Promise<'quiet'>((resolve) => setTimeout(() => resolve('quiet'), 300)),
    ]);
    assert.equal(quiet, 'quiet');
    watch.close();
  } finally {
    inst.cleanup();
  }
});

test('the local watch wakes when datastore.cfg is edited behind its back', async () => {
  const inst = makeInstance('stowage-admission-');
  try {
    await inst.createStore('edited');
    const watch = inst.access.backend.watch('edited');
    const next = watch.changed();
    await inst.access.config.update((s) => {
      s.get('edited')!['maintenance-mode'] = 'offline,message="by hand"';
    });
    const woke = await Promise.race([
      next,
      new Promise<'timeout'>((resolve) => setTimeout(() => resolve('timeout'), 5000)),
    ]);
    assert.equal(woke, true);
    watch.close();
  } finally {
    inst.cleanup();
  }
});
