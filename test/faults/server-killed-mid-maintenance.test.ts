/**
 * The server SIGKILLed in the middle of garbage collection and of a prune: after a restart GC
 * runs again cleanly, no chunk a finished snapshot needs is lost (the whole datastore verifies),
 * nothing is left half (no unfinished snapshot, no stray file in .chunks) and the operation
 * registry counts nothing for the dead process.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';

import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { openDatastoreAccess } from '../../src/maintenance/open-datastore-access.js';
import { runCli, STOWAGE_BIN } from '../helpers/cli.js';
import { writeSnapshots, type FixtureSnapshot } from '../helpers/snapshot-fixture.js';
import { runClient, startE2eServer, type E2eServer } from '../e2e/backup-helpers.js';
import {
  activeOperations,
  assertChunkStoreIntact,
  backupArgs,
  e2ePaths,
  randomTree,
  verifyWholeDatastore,
  waitUntil,
} from './fault-helpers.js';

let srv: E2eServer;

before(async () => {
  srv = await startE2eServer('stowage-fault-maint-');
  const src = randomTree(join(srv.root, 'src'), 1, 4 * 1024 * 1024);
  const b = await runClient(backupArgs(src, 'real', 1_700_000_000), srv.env);
  assert.equal(b.code, 0, b.stderr);
  // many small snapshots, so a prune of them takes long enough to be killed halfway
  const snaps: FixtureSnapshot[] = [];
  for (let g = 0; g < 40; g++)
    for (let t = 0; t < 25; t++)
      snaps.push({ type: 'vm', id: String(100 + g), time: 1_700_000_000 + t * 60 });
  const access = openDatastoreAccess(e2ePaths(srv.root));
  try {
    await writeSnapshots(access, 'local', snaps);
  } finally {
    access.close();
  }
});

after(async () => {
  await srv?.stop();
});

const admin = () => ['--config-dir', join(srv.root, 'etc'), '--server', `127.0.0.1:${srv.port}`];

/**
 * Run an admin command that follows a task, and SIGKILL the server once `when` holds (polled
 * every few ms: the task log reaches the CLI only every 300 ms, too late for a prune).
 */
async function killServerDuring(
  args: string[],
  what: string,
  when: (out: string) => boolean,
): Promise<string> {
  const cli = spawn(process.execPath, [STOWAGE_BIN, ...admin(), ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  cli.stdout.on('data', (d: Buffer) => (out += d.toString()));
  cli.stderr.on('data', (d: Buffer) => (out += d.toString()));
  const exited = new Promise((r) => cli.once('close', r));
  await waitUntil(`'${args.join(' ')}': ${what}`, () => when(out), 60_000, 2);
  await srv.kill();
  await exited;
  return out;
}

function vmSnapshotCount(): number {
  let n = 0;
  const vm = join(srv.storePath, 'vm');
  for (const g of readdirSync(vm)) n += readdirSync(join(vm, g)).filter((s) => /^\d{4}-/.test(s)).length;
  return n;
}

/** What the operator sees of the registry with the server down: nothing running. */
async function assertNoActiveOperations(): Promise<void> {
  assert.deepEqual(await activeOperations(admin(), 'local'), { read: 0, write: 0, operations: [] });
}

test('a server killed mid-prune and then mid-GC restarts into a clean datastore where GC runs again', async () => {
  const before = vmSnapshotCount();
  const pruneOut = await killServerDuring(
    ['prune', 'local', '--keep-last', '1'],
    'removed a first snapshot',
    () => vmSnapshotCount() < before,
  );
  const left = vmSnapshotCount();
  console.log(`prune killed after removing ${before - left} of ${before - 40} snapshots`);
  assert.ok(
    left < before && left > 40,
    `the kill did not land mid-prune (${left} snapshots left):\n${pruneOut}`,
  );
  await assertNoActiveOperations();

  srv = await startE2eServer('', { root: srv.root, port: srv.port });
  const gcOut = await killServerDuring(['gc', 'local'], 'sweeping', (out) => /processed \d+%/.test(out));
  assert.doesNotMatch(gcOut, /TASK OK/);
  await assertNoActiveOperations();

  srv = await startE2eServer('', { root: srv.root, port: srv.port });
  const gc = await runCli(STOWAGE_BIN, [...admin(), 'gc', 'local']);
  assert.equal(gc.code, 0, gc.stdout + gc.stderr);
  assert.match(gc.stdout, /TASK OK/);
  await assertNoActiveOperations();
  const v = await verifyWholeDatastore(e2ePaths(srv.root));
  assert.deepEqual(v.failed, {});
  assert.equal(v.verified, vmSnapshotCount() + 1);
  assertChunkStoreIntact(srv.storePath);
  // the killed tasks are not shown as running forever: their status is 'unknown', as in PBS
  const tasks = await runCli(STOWAGE_BIN, [...admin(), '--output-format', 'json', 'task', 'list']);
  assert.equal(tasks.code, 0, tasks.stderr);
  const statuses = (JSON.parse(tasks.stdout) as Array<{ worker_type: string; status?: string }>).map(
    (t) => `${t.worker_type}:${t.status}`,
  );
  assert.deepEqual(statuses, [
    'garbage_collection:OK',
    'garbage_collection:unknown',
    'prune:unknown',
    'backup:OK',
  ]);
});
