/**
 * The low-space hold applied (src/maintenance/low-space-monitor.ts) on a real 8 MiB tmpfs whose
 * free space a filler file sets: an ingest admission below the hold level engages the hold and is
 * refused with `low space: N% free`, reads and reclaims go on, the message follows free space
 * without new events, clearing the operator's mode leaves the hold, an operator's forced release
 * stands in another process of the instance until free space has risen above the release level,
 * and a missing datastore path never breaks admission.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DatastoreConfigFile, type DatastoreConfig } from '../../src/config/datastore-config.js';
import { FilesystemChunkBackend } from '../../src/datastore/chunk-store.js';
import type { DatastoreAccess } from '../../src/maintenance/datastore-access.js';
import { openDatastoreAccess } from '../../src/maintenance/open-datastore-access.js';
import { LOW_SPACE_SOURCE } from '../../src/maintenance/low-space-hold.js';
import { e2ePaths } from '../faults/fault-helpers.js';

const STORE = 'tight';
const MiB = 1024 * 1024;
let root: string;
let mounted = false;
let filler: string;
const opened: DatastoreAccess[] = [];

before(async () => {
  root = mkdtempSync(join(tmpdir(), 'stowage-low-space-'));
  const fs = join(root, 'fs');
  mkdirSync(fs);
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=8m', 'tmpfs', fs], { stdio: 'pipe' });
    mounted = true;
  } catch {
    return;
  }
  (await FilesystemChunkBackend.create(join(fs, STORE))).closeSync();
  await new DatastoreConfigFile(e2ePaths(root).configDir).update((stores) => {
    stores.set(STORE, { name: STORE, path: join(fs, STORE), 'low-space-hold': 30, 'low-space-release': 50 });
  });
  filler = join(fs, 'filler');
});

after(() => {
  for (const a of opened) a.close();
  if (mounted) execFileSync('umount', ['-l', join(root, 'fs')]);
  rmSync(root, { recursive: true, force: true });
});

/** A process of the instance: its own registry, history and monitor handles on the shared files. */
function open(): DatastoreAccess {
  const access = openDatastoreAccess(e2ePaths(root));
  opened.push(access);
  return access;
}

/** Leave about `mib` MiB of the 8 MiB filesystem taken by the filler. */
function fill(mib: number): void {
  rmSync(filler, { force: true });
  if (mib > 0) writeFileSync(filler, Buffer.alloc(mib * MiB, 1));
}

const cfg = (a: DatastoreAccess): DatastoreConfig => a.datastoreConfig(STORE);

async function admits(a: DatastoreAccess, cls: 'read' | 'ingest' | 'reclaim'): Promise<string> {
  try {
    const h = await a.lookupDatastore(STORE, cls, { kind: 'test' });
    await h.release();
    return 'admitted';
  } catch (err) {
    return `${(err as { statusCode?: number; status?: number }).statusCode ?? ''} ${(err as Error).message}`;
  }
}

const lowSpaceEvents = async (a: DatastoreAccess) =>
  (await a.backend.events.history(STORE))
    .filter((e) => e.source === LOW_SPACE_SOURCE && e.type !== 'drained')
    .reverse()
    .map((e) => `${e.type}${e.detail?.forced ? ' (forced)' : ''}: ${e.message}`);

test('below the hold level an ingest admission engages the sealed hold and is refused with the free percent', async (t) => {
  if (!mounted) return t.skip('cannot mount a tmpfs here');
  const a = open();
  fill(7); // ~12% free
  const refused = await admits(a, 'ingest');
  assert.match(refused, /datastore 'tight' is unavailable: low space: 1\d% free$/);
  assert.equal(await admits(a, 'read'), 'admitted', 'restores go on');
  assert.equal(await admits(a, 'reclaim'), 'admitted', 'prune, deletes and GC go on');
  const [hold] = await a.backend.holds(STORE);
  assert.equal(hold?.type, 'sealed');

  // between the levels the hold stays, its message follows free space, and no event is added
  fill(5); // ~37% free
  const free = await a.lowSpace!.check(cfg(a));
  assert.ok(free !== undefined && free > 30 && free < 50, `${free}% free`);
  assert.match((await a.backend.holds(STORE))[0]!.message, /^low space: 3\d% free$/);
  assert.match(await admits(open(), 'ingest'), /low space: 3\d% free$/, 'another process is refused too');

  // clearing the operator's mode does not lift it
  await a.backend.setMode(STORE, { type: 'read-only' });
  await a.backend.setMode(STORE, undefined);
  assert.equal((await a.backend.holds(STORE)).length, 1);

  // above the release level it lifts by itself
  fill(0);
  await a.lowSpace!.check(cfg(a));
  assert.deepEqual(await a.backend.holds(STORE), []);
  assert.equal(await admits(a, 'ingest'), 'admitted');
  assert.deepEqual(
    (await lowSpaceEvents(a)).map((e) => e.replace(/\d+%/, 'N%')),
    ['hold-engaged: low space: N% free', 'hold-released: low space: N% free'],
  );
});

test("an operator's forced release stands in every process until free space has risen above the release level", async (t) => {
  if (!mounted) return t.skip('cannot mount a tmpfs here');
  const a = open();
  fill(7);
  await a.lowSpace!.check(cfg(a));
  assert.equal((await a.backend.holds(STORE)).length, 1);

  const forced = await a.lowSpace!.forceRelease(STORE, LOW_SPACE_SOURCE, 'root@pam');
  assert.equal(forced.released?.source, LOW_SPACE_SOURCE);
  assert.match(forced.warning ?? '', /^writing with 1\d% free may fill the disk$/);
  // another process (a CLI tool, a restarted server) samples the same low space and admits
  const b = open();
  assert.equal(await admits(b, 'ingest'), 'admitted');
  await b.lowSpace!.check(cfg(b));
  assert.deepEqual(await b.backend.holds(STORE), []);
  assert.match((await lowSpaceEvents(a)).at(-1)!, /^hold-released \(forced\)/);

  // once above the release level the override ends; the next drop engages again
  fill(0);
  await b.lowSpace!.check(cfg(b));
  fill(7);
  assert.match(await admits(open(), 'ingest'), /low space: 1\d% free$/);
  fill(0);
  await a.lowSpace!.check(cfg(a));
  assert.deepEqual(await a.backend.holds(STORE), []);
});

test('a datastore whose path is missing is not sampled and its admissions are not broken', async (t) => {
  if (!mounted) return t.skip('cannot mount a tmpfs here');
  const a = open();
  await a.config.update((stores) => {
    stores.set('gone', {
      name: 'gone',
      path: join(root, 'fs', 'nothing-here'),
      'low-space-hold': 99,
      'low-space-release': 100,
    });
  });
  assert.ok((await a.lowSpace!.check(cfg(a)))! > 50, 'the mounted store is sampled');
  assert.equal(await a.lowSpace!.check(a.datastoreConfig('gone')), undefined);
  await a.lowSpace!.checkAll();
  assert.deepEqual(await a.backend.holds('gone'), []);
});
