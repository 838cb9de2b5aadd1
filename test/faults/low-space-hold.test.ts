/**
 * The low-space hold end to end (issue 13) on a small real filesystem (a 32 MiB tmpfs under the
 * datastore, the server's free-space check every 300 ms): backups fill it until the hold engages
 * by itself; the next backup is refused with `low space`; prune and GC run under the hold and free
 * the space; the hold lifts by itself, a backup succeeds, the first snapshot still restores byte
 * for byte, and the maintenance history shows each step.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, utimesSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { EXIT } from '../../src/cli/exit-codes.js';
import { runCli, STOWAGE_BIN } from '../helpers/cli.js';
import { loginApi, runClient, startE2eServer, type E2eServer } from '../e2e/backup-helpers.js';
import { backupArgs, filesMatching, randomTree } from './fault-helpers.js';

const cleanups: Array<() => void> = [];
after(() => {
  for (const c of cleanups.reverse()) c();
});

async function waitFor(what: string, probe: () => Promise<boolean>, timeoutMs = 30_000): Promise<void> {
  for (const end = Date.now() + timeoutMs; Date.now() < end;) {
    if (await probe()) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  assert.fail(`timed out waiting for ${what}`);
}

test('a filling datastore is held by itself, prune and GC free it, the hold lifts by itself and backups go on', async (t) => {
  const root = mkdtempSync(join(tmpdir(), 'stowage-fault-lowspace-'));
  cleanups.push(() => rmSync(root, { recursive: true, force: true }));
  const stores = join(root, 'stores');
  mkdirSync(stores);
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=32m', 'tmpfs', stores], { stdio: 'pipe' });
  } catch (err) {
    t.skip(`cannot mount a tmpfs here: ${String((err as { stderr?: Buffer }).stderr ?? err).trim()}`);
    return;
  }
  cleanups.push(() => execFileSync('umount', ['-l', stores]));
  const srv: E2eServer = await startE2eServer('unused-', {
    root,
    env: { STOWAGE_LOW_SPACE_INTERVAL_MS: '300' },
  });
  cleanups.push(() => srv.proc.kill('SIGKILL'));
  const api = await loginApi(srv);
  await api.call('PUT', '/config/datastore/local', { 'low-space-hold': 40, 'low-space-release': 60 });
  const holds = async () =>
    (
      await api.call<{ holds: Array<{ source: string; type: string; message: string }> }>(
        'GET',
        '/admin/datastore/local/active-operations',
      )
    ).holds;
  const backup = (dir: string, id: string, time: number) => runClient(backupArgs(dir, id, time), srv.env);

  const keep = randomTree(join(root, 'keep'), 2, 1024 * 1024);
  assert.equal((await backup(keep, 'keep', 1_700_000_000)).code, 0);
  assert.deepEqual(await holds(), []);
  // 20 MiB more of 32: under 40% free
  const fill = await backup(randomTree(join(root, 'fill'), 20, 1024 * 1024), 'fill', 1_700_000_000);
  assert.equal(fill.code, 0, fill.stderr);
  await waitFor('the hold to engage', async () => (await holds()).some((h) => h.source === 'low-space'));
  const [hold] = await holds();
  assert.equal(hold!.type, 'sealed');
  assert.match(hold!.message, /^low space: \d+% free$/);

  const refused = await backup(keep, 'keep', 1_700_000_100);
  assert.equal(refused.code, EXIT.MAINTENANCE, refused.stderr);
  assert.match(refused.stderr, /is unavailable: low space: \d+% free/);

  // prune and GC go on under the hold (GC's cutoff protects chunks for a day: age them)
  await api.call('DELETE', '/admin/datastore/local/snapshots', {
    'backup-type': 'host',
    'backup-id': 'fill',
    'backup-time': 1_700_000_000,
  });
  const old = (Date.now() - 2 * 86_400_000) / 1000;
  for (const f of filesMatching(join(srv.storePath, '.chunks'), /^[0-9a-f]{64}$/)) {
    utimesSync(join(srv.storePath, '.chunks', f), old, old);
  }
  const gc = await runCli(STOWAGE_BIN, [
    '--config-dir',
    join(root, 'etc'),
    '--server',
    `127.0.0.1:${srv.port}`,
    'gc',
    'local',
  ]);
  assert.equal(gc.code, 0, gc.stdout + gc.stderr);

  await waitFor('the hold to lift by itself', async () => (await holds()).length === 0);
  const after = await backup(keep, 'keep', 1_700_000_200);
  assert.equal(after.code, 0, after.stderr);

  // nothing lost: the first snapshot restores byte for byte
  const dst = join(root, 'restored');
  const restored = await runClient(['restore', 'host/keep/2023-11-14T22:13:20Z', 'data.tar', dst], srv.env);
  assert.equal(restored.code, 0, restored.stderr);
  assert.deepEqual(readFileSync(join(dst, 'f1')), readFileSync(join(keep, 'f1')));

  const history = await api.call<Array<{ type: string; source: string; to?: string }>>(
    'GET',
    '/admin/datastore/local/maintenance-history',
  );
  assert.deepEqual(
    history
      .filter((e) => e.source === 'low-space' && e.type !== 'drained')
      .reverse()
      .map((e) => `${e.type} ${e.to}`),
    ['hold-engaged sealed', 'hold-released none'],
  );
});
