/**
 * The pull engine between two datastores of one instance (the local source), for what the e2e
 * test cannot provoke cheaply: a source that fails half-way through a snapshot leaves nothing on
 * the target and the next pull completes it; namespaces map and are created to max-depth; group
 * filters and transfer-last select as PBS's do; a group owned by someone else is not written to.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { makeInstance, type TestInstance } from '../helpers/instance.js';
import { writeSnapshots } from '../helpers/snapshot-fixture.js';
import { BackupGroup, BackupNamespace, type BackupDir } from '../../src/datastore/backup-info.js';
import { LocalSyncSource } from '../../src/sync/local-source.js';
import { excludedByListing } from '../../src/sync/snapshot-filter.js';
import { pullStore, type PullOptions } from '../../src/sync/pull.js';
import { RateLimiter } from '../../src/sys/rate-limiter.js';
import { groupPasses, parseGroupFilter } from '../../src/sync/group-filter.js';
import type { SyncSource } from '../../src/sync/sync-source.js';
import { StowageError } from '../../src/errors.js';
import { existsSync, renameSync } from 'node:fs';
import { chunkFilePath } from '../../src/datastore/chunk-store.js';
import type { Datastore } from '../../src/datastore/datastore.js';
import { sha256 } from '../../src/datastore/digest.js';
import { datastoreInternals } from '../helpers/datastore-internals.js';

const T0 = 1_700_000_000;

// one instance for all tests (a full chunk store takes seconds to create); each test syncs its own namespace
let inst: TestInstance;

before(async () => {
  inst = makeInstance('stowage-pull-');
  await inst.createStore('src', {}, { full: true });
  await inst.createStore('dst', {}, { full: true });
});
after(() => inst?.cleanup());

/** Pull src/`ns` into dst/`ns`; the outcome and the log. */
async function run(
  ns: string,
  opts: Partial<PullOptions> = {},
  wrap = (s: SyncSource) => s,
): Promise<{ log: string[]; error?: Error }> {
  const source = await inst.access.lookupDatastore('src', 'read', { kind: 'sync' });
  const target = await inst.access.lookupDatastore('dst', 'ingest', { kind: 'sync' });
  const log: string[] = [];
  try {
    await pullStore(wrap(new LocalSyncSource(source.datastore)), target.datastore, {
      ns: BackupNamespace.parse(ns),
      sourceNs: BackupNamespace.parse(ns),
      owner: 'sync@pbs',
      removeVanished: false,
      groupFilter: [],
      log: (l) => log.push(l),
      ...opts,
    });
    return { log };
  } catch (error) {
    return { log, error: error as Error };
  } finally {
    await source.release();
    await target.release();
  }
}

/** The finished snapshots of `store`/`ns`. */
async function finishedDirs(store: string, ns: string): Promise<BackupDir[]> {
  const h = await inst.access.lookupDatastore(store, 'read', { kind: 'test' });
  try {
    const nsObj = BackupNamespace.parse(ns);
    if (!h.datastore.namespaceExists(nsObj)) return [];
    return h.datastore
      .listGroups(nsObj)
      .flatMap((g) => h.datastore.listSnapshots(g).filter((s) => s.finished))
      .map((s) => s.dir);
  } finally {
    await h.release();
  }
}

async function snapshots(store: string, ns: string): Promise<string[]> {
  return (await finishedDirs(store, ns)).map((d) => `${d}`).sort();
}

/** The times of the finished snapshots of `store`/`ns`, oldest first. */
async function times(store: string, ns: string): Promise<number[]> {
  return (await finishedDirs(store, ns)).map((d) => d.time).sort((a, b) => a - b);
}

test('a source failing half-way leaves no snapshot on the target; the next pull completes it', async () => {
  await writeSnapshots(inst.access, 'src', [
    { type: 'vm', id: '100', time: T0, label: 'a', ns: 't1' },
    { type: 'vm', id: '100', time: T0 + 60, label: 'b', ns: 't1' },
  ]);
  let chunks = 0;
  const failing = (s: SyncSource): SyncSource =>
    wrapSource(s, {
      openReader: async (dir) => {
        const r = await s.openReader(dir);
        return {
          ...r,
          chunk: async (digest) => {
            if (++chunks === 3) throw new Error('connection reset by peer');
            return r.chunk(digest);
          },
        };
      },
    });
  const broken = await run('t1', {}, failing);
  assert.match(String(broken.error?.message), /sync failed with some errors/);
  assert.ok(
    broken.log.some((l) => /sync group vm\/100 failed - connection reset by peer/.test(l)),
    broken.log.join('\n'),
  );
  // the first snapshot (2 chunks) made it, the second did not leave a trace
  assert.deepEqual(await snapshots('dst', 't1'), [
    `vm/100/${new Date(T0 * 1000).toISOString().replace('.000', '')}`,
  ]);
  const h = await inst.access.lookupDatastore('dst', 'read', { kind: 'test' });
  const all = h.datastore.listSnapshots(new BackupGroup(BackupNamespace.parse('t1'), 'vm', '100'));
  await h.release();
  assert.equal(all.length, 1, 'no unfinished snapshot directory remains');

  const again = await run('t1');
  assert.equal(again.error, undefined, again.log.join('\n'));
  assert.deepEqual(await snapshots('dst', 't1'), await snapshots('src', 't1'));
});

test('namespaces map below the target namespace, are created, and max-depth limits the descent', async () => {
  await writeSnapshots(inst.access, 'src', [
    { type: 'ct', id: '1', time: T0, ns: 'site' },
    { type: 'ct', id: '2', time: T0, ns: 'site/rack1' },
    { type: 'ct', id: '3', time: T0, ns: 'site/rack1/deep' },
  ]);
  const r = await run('site', {
    ns: BackupNamespace.parse('mirror'),
    maxDepth: 1,
  });
  assert.equal(r.error, undefined, r.log.join('\n'));
  assert.equal((await snapshots('dst', 'mirror')).length, 1);
  assert.equal((await snapshots('dst', 'mirror/rack1')).length, 1);
  assert.deepEqual(await snapshots('dst', 'mirror/rack1/deep'), []);
  assert.ok(r.log.includes('Created namespace mirror/rack1'));
});

test('group filters and transfer-last select as PBS does; a group of another owner is left alone', async () => {
  await writeSnapshots(
    inst.access,
    'src',
    (
      [
        ['vm', '100', T0],
        ['vm', '100', T0 + 60],
        ['vm', '100', T0 + 120],
        ['ct', '200', T0],
        ['host', 'web', T0],
      ] as const
    ).map(([type, id, time]) => ({ type, id, time, ns: 't3' })),
  );
  await writeSnapshots(inst.access, 'dst', [
    { type: 'host', id: 'web', time: T0 - 60, owner: 'alice@pbs', ns: 't3' },
  ]);
  const r = await run('t3', {
    groupFilter: ['type:vm', 'type:host', 'exclude:regex:^ct/'].map((f) => parseGroupFilter(f)),
    transferLast: 2,
  });
  assert.match(String(r.error?.message), /sync failed with some errors/);
  assert.ok(
    r.log.some((l) => /sync group host\/web failed - owner check failed \(sync@pbs != alice@pbs\)/.test(l)),
  );
  const got = await snapshots('dst', 't3');
  assert.equal(got.filter((s) => s.startsWith('vm/100/')).length, 2, 'only the newest 2 of vm/100');
  assert.equal(got.filter((s) => s.startsWith('ct/')).length, 0, 'ct excluded');
  assert.equal(got.filter((s) => s.startsWith('host/web/')).length, 1, "alice's own snapshot only");
});

test('a group filter that does not parse is a 400 naming it', () => {
  for (const bad of ['type:disk', 'group:vm', 'regex:(', 'name:x', 'exclude:']) {
    assert.throws(
      () => parseGroupFilter(bad),
      (err: StowageError) => err.status === 400 && err.message.includes(`invalid group filter '${bad}'`),
      bad,
    );
  }
  const g = new BackupGroup(BackupNamespace.root(), 'vm', '100');
  assert.equal(groupPasses([parseGroupFilter('group:vm/100')], g), true);
  assert.equal(groupPasses([parseGroupFilter('exclude:group:vm/100')], g), false);
  assert.equal(groupPasses([], g), true);
});

test('rate-in paces the downloads: the bytes pulled take at least (bytes - burst) / rate', async () => {
  await writeSnapshots(inst.access, 'src', [
    { type: 'vm', id: '300', time: T0, ns: 't5', label: 'paced-a' },
    { type: 'vm', id: '300', time: T0 + 60, ns: 't5', label: 'paced-b' },
  ]);
  const rate = 60; // bytes per second: the fixture's chunks are small
  const started = Date.now();
  const r = await run('t5', { rateLimit: new RateLimiter(rate, 10) });
  const elapsed = (Date.now() - started) / 1000;
  assert.equal(r.error, undefined, r.log.join('\n'));
  const bytes = Number(/\((\d+) bytes\)/.exec(r.log.find((l) => l.startsWith('Summary:'))!)![1]);
  assert.ok(bytes > 2 * rate, `enough data to pace (${bytes} bytes)`);
  assert.ok(elapsed >= (bytes - 10) / rate - 0.05, `${bytes} bytes in ${elapsed} s at ${rate} B/s`);
});

test('verified-only and encrypted-only pull what PBS pulls, checked on the listing and again on the manifest read', async () => {
  await writeSnapshots(inst.access, 'src', [
    { type: 'vm', id: '400', time: T0, ns: 'f1', verifyState: 'ok', encrypted: true },
    { type: 'vm', id: '400', time: T0 + 60, ns: 'f1', verifyState: 'ok' },
    { type: 'vm', id: '400', time: T0 + 120, ns: 'f1', verifyState: 'failed', encrypted: true },
    { type: 'vm', id: '400', time: T0 + 180, ns: 'f1', encrypted: true },
  ]);
  const into = (ns: string) => ({ ns: BackupNamespace.parse(ns) });
  const verified = await run('f1', { ...into('f1-verified'), verifiedOnly: true });
  assert.equal(verified.error, undefined, verified.log.join('\n'));
  assert.deepEqual(await times('dst', 'f1-verified'), [T0, T0 + 60]);
  assert.ok(
    verified.log.includes(
      'vm/400: skipped: 2 snapshot(s) - not verified or not encrypted (verified-only/encrypted-only)',
    ),
    verified.log.join('\n'),
  );
  const encrypted = await run('f1', { ...into('f1-encrypted'), encryptedOnly: true });
  assert.deepEqual(await times('dst', 'f1-encrypted'), [T0, T0 + 120, T0 + 180], encrypted.log.join('\n'));
  const both = await run('f1', { ...into('f1-both'), verifiedOnly: true, encryptedOnly: true });
  assert.deepEqual(await times('dst', 'f1-both'), [T0], both.log.join('\n'));

  // a listing that says every snapshot is verified and encrypted: the manifests still decide
  const lying = (s: SyncSource): SyncSource =>
    wrapSource(s, {
      listSnapshots: async (g) =>
        (await s.listSnapshots(g)).map((x) => ({
          ...x,
          verifyState: 'ok',
          files: x.files.map((f) => ({
            ...f,
            cryptMode: f.filename.endsWith('.blob') ? 'sign-only' : 'encrypt',
          })),
        })),
    });
  const checked = await run('f1', { ...into('f1-lying'), verifiedOnly: true, encryptedOnly: true }, lying);
  assert.equal(checked.error, undefined, checked.log.join('\n'));
  assert.deepEqual(await times('dst', 'f1-lying'), [T0]);
  const filtered = checked.log.filter((l) =>
    l.endsWith(': skipped, did not match verified-only/encrypted-only filter'),
  );
  assert.equal(filtered.length, 3, checked.log.join('\n'));
});

test('with verified-only, remove-vanished deletes the target copy of a snapshot the source has but not verified (as PBS)', async () => {
  await writeSnapshots(inst.access, 'src', [
    { type: 'vm', id: '401', time: T0, ns: 'f2', verifyState: 'ok' },
    { type: 'vm', id: '401', time: T0 + 60, ns: 'f2' },
  ]);
  assert.equal((await run('f2')).error, undefined);
  assert.deepEqual(await times('dst', 'f2'), [T0, T0 + 60]);
  const r = await run('f2', { verifiedOnly: true, removeVanished: true });
  assert.equal(r.error, undefined, r.log.join('\n'));
  assert.deepEqual(await times('dst', 'f2'), [T0]);
  assert.ok(
    r.log.some((l) => l.startsWith('delete vanished snapshot ')),
    r.log.join('\n'),
  );
});

test('resync-corrupt pulls again a snapshot whose verification failed on the target, its lost chunk included, beyond transfer-last', async () => {
  await writeSnapshots(inst.access, 'src', [
    { type: 'vm', id: '402', time: T0, ns: 'f3', label: 'resync-a' },
    { type: 'vm', id: '402', time: T0 + 60, ns: 'f3', label: 'resync-b' },
  ]);
  assert.equal((await run('f3')).error, undefined);
  // what a failed verification leaves: the state in the manifest, the corrupt chunk renamed away
  const dir = new BackupGroup(BackupNamespace.parse('f3'), 'vm', '402').snapshot(T0);
  const lost = chunkFilePath(await withDst((ds) => ds.basePath), sha256(Buffer.alloc(4096, 'resync-a:0;')));
  await withDst(async (ds) => {
    await ds.updateManifest(dir, (m) => {
      m.unprotected.verify_state = { upid: 'UPID:test-verify', state: 'failed' };
    });
    renameSync(lost, `${lost}.0.bad`);
  });
  const state = () => withDst((ds) => ds.loadManifest(dir).unprotected.verify_state?.state);

  const plain = await run('f3');
  assert.equal(plain.error, undefined, plain.log.join('\n'));
  assert.equal(existsSync(lost), false, 'a plain pull leaves an older snapshot as it is');
  assert.equal(await state(), 'failed');

  const r = await run('f3', { resyncCorrupt: true, transferLast: 1 });
  assert.equal(r.error, undefined, r.log.join('\n'));
  assert.ok(r.log.includes(`re-sync snapshot ${dir} due to corruption`), r.log.join('\n'));
  assert.equal(existsSync(lost), true, 'the lost chunk is downloaded again');
  assert.equal(await state(), undefined, "the source's manifest replaces the failed one");
});

/** `fn` on the target datastore (admitted as ingest), with its paths. */
async function withDst<T>(fn: (ds: Datastore) => T | Promise<T>): Promise<T> {
  const h = await inst.access.lookupDatastore('dst', 'ingest', { kind: 'test' });
  try {
    return await fn(datastoreInternals(h.datastore));
  } finally {
    await h.release();
  }
}

test('remove-vanished removes the target namespaces no source namespace maps onto, deepest first, as the owner may', async () => {
  await writeSnapshots(inst.access, 'src', [
    { type: 'vm', id: '500', time: T0, ns: 'v1/a' },
    { type: 'vm', id: '501', time: T0, ns: 'v1/b/deep' },
  ]);
  assert.equal((await run('v1')).error, undefined);
  assert.equal((await snapshots('dst', 'v1/b/deep')).length, 1);
  // gone from the source: v1/b (with v1/b/deep); only on the target: three more
  const src = await inst.access.lookupDatastore('src', 'ingest', { kind: 'test' });
  await src.datastore.deleteNamespace(BackupNamespace.parse('v1/b'), { deleteGroups: true });
  await src.release();
  await writeSnapshots(inst.access, 'dst', [
    { type: 'vm', id: '502', time: T0, ns: 'v1/kept', owner: 'sync@pbs' },
    { type: 'vm', id: '503', time: T0, ns: 'v1/refused', owner: 'sync@pbs' },
    { type: 'vm', id: '504', time: T0, ns: 'v1/hidden', owner: 'sync@pbs' },
  ]);
  await withDst((ds) =>
    ds.setProtected(new BackupGroup(BackupNamespace.parse('v1/kept'), 'vm', '502').snapshot(T0), true),
  );

  const r = await run('v1', {
    removeVanished: true,
    namespaceRights: {
      checkModify: (ns) => {
        if (ns.name === 'v1/refused') throw new Error('missing privilege Datastore.Modify');
      },
      sees: (ns) => ns.name !== 'v1/hidden',
    },
  });
  assert.match(String(r.error?.message), /sync failed with some errors/);
  const removed = r.log.filter((l) => l.startsWith('Removed namespace '));
  assert.deepEqual(removed, ['Removed namespace v1/b/deep', 'Removed namespace v1/b'], r.log.join('\n'));
  assert.ok(
    r.log.includes('Did not remove namespace v1/kept - protected snapshots remain'),
    r.log.join('\n'),
  );
  assert.ok(
    r.log.includes(
      'Failed to remove namespace v1/refused - Removing v1/refused not allowed - missing privilege Datastore.Modify',
    ),
    r.log.join('\n'),
  );
  const dst = await inst.access.lookupDatastore('dst', 'read', { kind: 'test' });
  try {
    const left = dst.datastore.listNamespaces(BackupNamespace.parse('v1')).map((ns) => ns.name);
    assert.deepEqual(left.sort(), ['v1', 'v1/a', 'v1/hidden', 'v1/kept', 'v1/refused']);
  } finally {
    await dst.release();
  }
  assert.equal((await snapshots('dst', 'v1/a')).length, 1, 'what the source has stays');
});

test('worker-threads syncs groups at once, each group logged in labelled blocks', async () => {
  await writeSnapshots(inst.access, 'src', [
    { type: 'vm', id: '600', time: T0, ns: 'w1' },
    { type: 'vm', id: '601', time: T0, ns: 'w1' },
    { type: 'vm', id: '602', time: T0, ns: 'w1' },
  ]);
  // each group's first chunk waits until another group is downloading too: one at a time, this
  // would only go on after the 5 s escape
  const downloading = new Set<string>();
  let overlapped = false;
  const gate = (s: SyncSource): SyncSource =>
    wrapSource(s, {
      openReader: async (dir) => {
        const r = await s.openReader(dir);
        const label = `${dir.group}`;
        return {
          ...r,
          chunk: async (digest) => {
            downloading.add(label);
            for (let waited = 0; downloading.size < 2 && waited < 5000; waited += 10)
              await new Promise((res) => setTimeout(res, 10));
            if (downloading.size >= 2) overlapped = true;
            return r.chunk(digest);
          },
        };
      },
    });
  const r = await run('w1', { workerThreads: 3 }, gate);
  assert.equal(r.error, undefined, r.log.join('\n'));
  assert.ok(overlapped, 'two groups were downloading at the same time');
  assert.equal((await snapshots('dst', 'w1')).length, 3);
  // every line of a group carries its label; a group's lines come in blocks, not one by one
  for (const id of ['600', '601', '602']) {
    const label = `[vm/${id}]: `;
    const at = r.log.flatMap((l, i) => (l.startsWith(label) ? [i] : []));
    assert.ok(at.length >= 3, r.log.join('\n'));
    assert.ok(
      r.log.some((l) => l.startsWith(label) && l.endsWith(': sync done')),
      r.log.join('\n'),
    );
    const blocks = at.filter((i, k) => k === 0 || at[k - 1] !== i - 1).length;
    assert.ok(blocks < at.length, `vm/${id}: ${at.length} lines in ${blocks} blocks`);
  }
});

/** `s` with some of its calls replaced (a source that fails, lies or waits). */
function wrapSource(s: SyncSource, replaced: Partial<Omit<SyncSource, 'description'>>): SyncSource {
  return {
    description: s.description,
    listNamespaces: (r, d) => s.listNamespaces(r, d),
    listGroups: (ns) => s.listGroups(ns),
    listSnapshots: (g) => s.listSnapshots(g),
    openReader: (dir) => s.openReader(dir),
    ...replaced,
  };
}

test('a snapshot listed without its manifest (unreadable) is neither known verified nor encrypted', () => {
  const unread = { time: T0, inProgress: false, files: [] };
  assert.equal(excludedByListing(unread, { encryptedOnly: true }), true);
  assert.equal(excludedByListing(unread, { verifiedOnly: true }), true);
  assert.equal(excludedByListing(unread, {}), false);
  const signed = [
    { filename: 'drive-scsi0.img.fidx', cryptMode: 'encrypt' },
    { filename: 'index.json.blob', cryptMode: 'sign-only' },
  ];
  assert.equal(excludedByListing({ ...unread, files: signed }, { encryptedOnly: true }), false);
});
