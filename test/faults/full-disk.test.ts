/**
 * A datastore that runs out of space during a backup: the client gets a clear error naming the
 * lack of space, the server keeps serving, no half snapshot and no truncated chunk remain, and
 * GC reclaims the space so the next backup fits. Run on a real 20 MiB tmpfs where the machine
 * allows the mount, and always with a chunk backend that runs out of space after 20 MiB
 * (NO_SPACE_AFTER, test/faults/fixtures/no-space-backend.ts), so CI without mount rights still
 * checks everything above the filesystem.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statfsSync, utimesSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runCli, STOWAGE_BIN } from '../helpers/cli.js';
import { STATFS_CACHE_MS } from '../../src/maintenance/low-space-monitor.js';
import { runClient, startE2eServer, type E2eServer } from '../e2e/backup-helpers.js';
import {
  activeOperations,
  assertChunkStoreIntact,
  backupArgs,
  e2ePaths,
  filesMatching,
  randomTree,
  verifyWholeDatastore,
} from './fault-helpers.js';

const cleanups: Array<() => void> = [];
after(() => {
  for (const c of cleanups.reverse()) c();
});

const FULL =
  /^error: no space left on device: the datastore at '.*' is full \(writing chunk [0-9a-f]{64}\) - remove snapshots and run garbage collection to free space$/m;

/**
 * `freeBytes`: what the datastore has free (statfs of the tmpfs, or what the injecting backend
 * still accepts). A failed backup's chunk uploads in flight at the moment of ENOSPC are removed,
 * and the chunk it failed on may be large, so how much is free afterwards varies (more on a
 * loaded machine): the next backup is made larger than that, so that it still cannot fit.
 */
async function fullDiskScenario(root: string, srv: E2eServer, freeBytes?: () => number): Promise<void> {
  const tree = (name: string, mib: number) => randomTree(join(root, name), mib, 1024 * 1024);
  const backup = (dir: string, id: string, time: number) => runClient(backupArgs(dir, id, time), srv.env);
  const small = tree('small', 2);
  const first = await backup(small, 'keep', 1_700_000_000);
  assert.equal(first.code, 0, first.stderr);

  const big = await backup(tree('big', 30), 'big', 1_700_000_000);
  assert.notEqual(big.code, 0, 'a 30 MiB backup into 20 MiB succeeded');
  assert.match(big.stderr, FULL);

  // the server still serves: listing, and a restore of the earlier snapshot
  const list = await runClient(['snapshots', '--output-format', 'json'], srv.env);
  assert.equal(list.code, 0, list.stderr);
  assert.deepEqual(
    (JSON.parse(list.stdout) as Array<{ 'backup-id': string }>).map((s) => s['backup-id']),
    ['keep'],
  );
  const dst = join(root, 'restored');
  const restored = await runClient(['restore', 'host/keep', 'data.tar', dst], srv.env);
  assert.equal(restored.code, 0, restored.stderr);
  const sha = (p: string) => createHash('sha256').update(readFileSync(p)).digest('hex');
  assert.equal(sha(join(dst, 'f0')), sha(join(small, 'f0')));

  // nothing half: no snapshot or group of the failed backup, no temp or truncated chunk file
  assert.ok(!existsSync(join(srv.storePath, 'host', 'big')));
  assert.deepEqual(filesMatching(srv.storePath, /tmp_/), []);
  assertChunkStoreIntact(srv.storePath);

  // a backup larger than the space left does not fit now (8 MiB, or 2 MiB more than is free,
  // at most 14 so that it fits once GC freed the failed backup's chunks): it runs out of space,
  // or, when less than 5% is left, the low-space hold (src/maintenance/low-space-monitor.ts)
  // refuses it before it starts ...
  const MiB = 1024 * 1024;
  const free = freeBytes?.() ?? 0;
  const mediumMiB = Math.min(14, Math.max(8, Math.ceil(free / MiB) + 2));
  const medium = tree('medium', mediumMiB);
  const refused = await backup(medium, 'medium', 1_700_000_100);
  const refusedAt = Date.now();
  assert.notEqual(refused.code, 0, `a ${mediumMiB} MiB backup fit (${free} bytes were free)`);
  assert.match(refused.stderr, new RegExp(`${FULL.source}|is unavailable: low space: \\d+% free$`, 'm'));
  // ... until GC removes the chunks the failed backups left. Those are protected for GC's cutoff
  // (24 h 5 min after their upload, reference §7.6); age them as that day would. Once the failed
  // backups' sessions are over on the server: on a loaded machine uploads it still had in flight
  // landed in the space GC had just freed (a CI dry run then found 2% free after GC); and again
  // while the space is not back, at most three times.
  const admin = ['--config-dir', join(root, 'etc'), '--server', `127.0.0.1:${srv.port}`];
  const writers = async () => (await activeOperations(admin, 'local')).write;
  for (let round = 1; ; round++) {
    for (const until = Date.now() + 30_000; (await writers()) > 0;) {
      assert.ok(Date.now() < until, 'the failed backups still write after 30 s');
      await new Promise((r) => setTimeout(r, 200));
    }
    const old = (Date.now() - 2 * 86_400_000) / 1000;
    for (const f of filesMatching(join(srv.storePath, '.chunks'), /^[0-9a-f]{64}$/)) {
      utimesSync(join(srv.storePath, '.chunks', f), old, old);
    }
    const gc = await runCli(STOWAGE_BIN, [...admin, 'gc', 'local']);
    assert.equal(gc.code, 0, gc.stdout + gc.stderr);
    if (round === 3 || !freeBytes || freeBytes() >= (mediumMiB + 1) * MiB) break;
    await new Promise((r) => setTimeout(r, 1000));
  }
  // a hold the refusal engaged lifts on the next free-space sample (one per 2 s, STATFS_CACHE_MS)
  await new Promise((r) => setTimeout(r, Math.max(0, refusedAt + STATFS_CACHE_MS + 100 - Date.now())));
  const fits = await backup(medium, 'medium', 1_700_000_200);
  assert.equal(fits.code, 0, fits.stderr);
  assert.deepEqual(await verifyWholeDatastore(e2ePaths(root)), { verified: 2, failed: {} });
}

function tempRoot(): string {
  const root = mkdtempSync(join(tmpdir(), 'stowage-fault-full-'));
  cleanups.push(() => rmSync(root, { recursive: true, force: true }));
  return root;
}

test('a full filesystem (20 MiB tmpfs) fails the backup clearly, leaves nothing half and is reclaimed by GC', async (t) => {
  const root = tempRoot();
  const stores = join(root, 'stores');
  mkdirSync(stores);
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=20m', 'tmpfs', stores], { stdio: 'pipe' });
  } catch (err) {
    const why = String((err as { stderr?: Buffer }).stderr ?? err).trim();
    return t.skip(`cannot mount a tmpfs here (${why}); the injected variant below still runs`);
  }
  cleanups.push(() => execFileSync('umount', ['-l', stores]));
  const srv = await startE2eServer('', { root });
  try {
    await fullDiskScenario(root, srv, () => {
      const st = statfsSync(stores);
      return st.bavail * st.bsize;
    });
  } finally {
    await srv.kill();
  }
});

test('a datastore out of space (injected after 20 MiB) fails the backup clearly and is reclaimed by GC', async () => {
  const root = tempRoot();
  const left = join(root, 'space-left');
  const srv = await startE2eServer('', {
    root,
    env: { NO_SPACE_AFTER: String(20 * 1024 * 1024), NO_SPACE_FILE: left },
  });
  try {
    // what the failed backup left decides how large the next one must be not to fit (it left
    // 8 MiB or more when the chunk it failed on was that large)
    await fullDiskScenario(root, srv, () => Number(readFileSync(left, 'utf8')));
  } finally {
    await srv.kill();
  }
});
