/**
 * Creating and updating a datastore through the domain functions the API, the admin CLI (via the
 * API) and the quick start share.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ensureQuickstartDatastore, QUICKSTART_STORE } from '../../src/cli/admin/quickstart.js';
import { DatastoreConfigFile } from '../../src/config/datastore-config.js';
import { createDatastore, prepareDatastoreCreation } from '../../src/maintenance/create-datastore.js';
import { updateDatastore } from '../../src/maintenance/update-datastore.js';
import { makeInstance } from '../helpers/instance.js';

/** Count the writes of datastore.cfg through `access.config`. */
function countWrites(config: { update: (...args: never[]) => unknown }): () => number {
  let writes = 0;
  const original = config.update.bind(config) as (...args: never[]) => unknown;
  config.update = (...args: never[]) => {
    writes++;
    return original(...args);
  };
  return () => writes;
}

test('an update changing the mode and other fields writes datastore.cfg once', async () => {
  const inst = makeInstance('stowage-lifecycle-');
  try {
    await inst.createStore('store1', { comment: 'old', tuning: 'chunk-order=none' });
    const writes = countWrites(inst.access.config as never);
    const r = await updateDatastore(inst.access, 'store1', {
      set: { comment: 'new', 'gc-schedule': 'daily' },
      delete: 'tuning',
      'maintenance-mode': 'read-only,message="disk swap"',
    });
    assert.equal(writes(), 1);
    const cfg = inst.access.config.read();
    assert.equal(r.digest, cfg.digest);
    assert.equal(r.gcScheduleChanged, true);
    const s1 = cfg.stores.get('store1')!;
    assert.equal(s1.comment, 'new');
    assert.equal(s1['gc-schedule'], 'daily');
    assert.equal(s1.tuning, undefined);
    assert.equal(s1['maintenance-mode'], 'read-only,message="disk swap"');

    await updateDatastore(inst.access, 'store1', { set: { comment: 'newer' } });
    await updateDatastore(inst.access, 'store1', { set: {}, delete: ['maintenance-mode'] });
    assert.equal(writes(), 3, 'fields alone, and the mode alone, are one write each');
    assert.equal(inst.access.config.read().stores.get('store1')!['maintenance-mode'], undefined);
  } finally {
    inst.cleanup();
  }
});

test('an update with a bad field, a bad mode or a stale digest writes nothing', async () => {
  const inst = makeInstance('stowage-lifecycle-');
  try {
    await inst.createStore('store1');
    const file = join(inst.paths.configDir, 'datastore.cfg');
    const before = readFileSync(file);
    const bad = [
      { set: { 'gc-schedule': 'not a schedule' }, 'maintenance-mode': 'offline' },
      { set: { comment: 'x' }, 'maintenance-mode': 'sideways' },
      { set: { comment: 'x' }, delete: 'no-such-property' },
      { set: { comment: 'x' }, digest: '0'.repeat(64) },
    ];
    for (const update of bad) {
      await assert.rejects(updateDatastore(inst.access, 'store1', update), JSON.stringify(update));
    }
    assert.deepEqual(readFileSync(file), before);
  } finally {
    inst.cleanup();
  }
});

test('a prepared creation holds its name and path until it ends, and a failed one leaves the path usable', async () => {
  const inst = makeInstance('stowage-lifecycle-');
  try {
    const path = join(inst.root, 'stores', 'new1');
    const prepared = await prepareDatastoreCreation(inst.access, {
      name: 'new1',
      path,
      set: { comment: 'c' },
    });
    await assert.rejects(
      prepareDatastoreCreation(inst.access, { name: 'new1', path: join(inst.root, 'other') }),
      /already exists/,
    );
    await assert.rejects(
      prepareDatastoreCreation(inst.access, { name: 'new2', path: join(path, 'inner') }),
      /is being created/,
    );
    // someone adds the same name meanwhile: the creation fails and removes what it made
    await new DatastoreConfigFile(inst.paths.configDir).update((stores) => {
      stores.set('new1', { name: 'new1', path: '/elsewhere' });
    });
    await assert.rejects(createDatastore(inst.access, prepared), /already exists/);
    assert.equal(existsSync(path), false);
    (await prepareDatastoreCreation(inst.access, { name: 'new3', path })).cancel();
  } finally {
    inst.cleanup();
  }
});

test('the quick start creates "local" once, and takes over a chunk store whose configuration is gone', async () => {
  const inst = makeInstance('stowage-lifecycle-');
  try {
    const lines: string[] = [];
    await ensureQuickstartDatastore(inst.paths, (l) => lines.push(l));
    const path = join(inst.paths.dataDir, 'datastores', QUICKSTART_STORE);
    const cfg = new DatastoreConfigFile(inst.paths.configDir);
    assert.deepEqual(cfg.read().stores.get(QUICKSTART_STORE), {
      name: QUICKSTART_STORE,
      path,
      comment: 'created by npm start',
    });
    assert.ok(existsSync(join(path, '.chunks')));
    const digest = cfg.read().digest;
    await ensureQuickstartDatastore(inst.paths, (l) => lines.push(l));
    assert.equal(cfg.read().digest, digest, 'a second start changes nothing');

    // the configuration is lost, the chunk store (with a marker file) stays
    writeFileSync(join(path, 'marker'), 'kept');
    writeFileSync(join(inst.paths.configDir, 'datastore.cfg'), '');
    await ensureQuickstartDatastore(inst.paths, () => {});
    assert.equal(cfg.read().stores.get(QUICKSTART_STORE)?.path, path);
    assert.equal(readFileSync(join(path, 'marker'), 'utf8'), 'kept');
  } finally {
    inst.cleanup();
  }
});

test('creation refuses a non-empty directory unless it adopts a chunk store there', async () => {
  const inst = makeInstance('stowage-lifecycle-');
  try {
    const path = join(inst.root, 'busy');
    mkdirSync(join(path, 'something'), { recursive: true });
    await assert.rejects(prepareDatastoreCreation(inst.access, { name: 'busy', path }), /is not empty/);
    await assert.rejects(
      prepareDatastoreCreation(inst.access, { name: 'busy', path, adoptExisting: true }),
      /is not empty/,
      'adopting needs a chunk store, not any directory',
    );
  } finally {
    inst.cleanup();
  }
});
