/**
 * A process holding an operation on a datastore is SIGKILLed — a test holder, and a real
 * `stowage gc` running in the admin CLI's own process (the server is stopped, so the CLI works on
 * the datastore directly): the operation stops counting at once, a maintenance `--wait` that
 * waited for it returns instead of blocking forever, and GC can run again.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';

import { join } from 'node:path';
import type { StowagePaths } from '../../src/config/paths.js';
import { openDatastoreAccess } from '../../src/maintenance/open-datastore-access.js';
import type { DatastoreAccess } from '../../src/maintenance/datastore-access.js';
import { HolderProcess } from '../helpers/holder-process.js';
import { runCli, STOWAGE_BIN } from '../helpers/cli.js';
import { runClient, startE2eServer, type E2eServer } from '../e2e/backup-helpers.js';
import {
  activeOperations as activeOperationsOf,
  backupArgs,
  e2ePaths,
  randomTree,
  waitUntil,
} from './fault-helpers.js';

let srv: E2eServer;
let paths: StowagePaths;
let access: DatastoreAccess;
let env: NodeJS.ProcessEnv;

before(async () => {
  srv = await startE2eServer('stowage-fault-cli-');
  const src = randomTree(join(srv.root, 'src'), 1, 1024 * 1024);
  const b = await runClient(backupArgs(src, 'web', 1_700_000_000), srv.env);
  assert.equal(b.code, 0, b.stderr);
  // the server is stopped: the admin CLI works on the configuration and the datastore itself
  await srv.kill();
  paths = e2ePaths(srv.root);
  access = openDatastoreAccess(paths);
  env = {
    STOWAGE_CONFIG_DIR: paths.configDir,
    STOWAGE_DATA_DIR: paths.dataDir,
    STOWAGE_RUN_DIR: paths.runDir,
    STOWAGE_SERVER: `127.0.0.1:${srv.port}`,
  };
});

after(async () => {
  access?.close();
  await srv?.stop();
});

const stowage = (...args: string[]) => runCli(STOWAGE_BIN, args, env);

const activeOperations = () => activeOperationsOf([], 'local', env);

test('a maintenance --wait blocked by a holder returns once the holder is SIGKILLed', async () => {
  const holder = await new HolderProcess(paths).start();
  try {
    await holder.hold('local', 'ingest', 'backup', 'host/web');
    assert.equal((await activeOperations()).write, 1);
    const wait = spawn(
      process.execPath,
      [STOWAGE_BIN, 'datastore', 'maintenance', 'set', 'local', 'offline', '--wait', '--timeout', '60s'],
      { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let out = '';
    wait.stdout.on('data', (d: Buffer) => (out += d.toString()));
    wait.stderr.on('data', (d: Buffer) => (out += d.toString()));
    const exited = new Promise<number>((r) => wait.once('close', (code) => r(code ?? -1)));
    await waitUntil('the mode set', () => /is now in offline maintenance mode/.test(out));
    await new Promise((r) => setTimeout(r, 1000));
    assert.equal(wait.exitCode, null, `the wait did not wait for the holder:\n${out}`);
    const killedAt = Date.now();
    await holder.kill('SIGKILL');
    assert.equal(await exited, 0, out);
    assert.ok(Date.now() - killedAt < 10_000, 'the wait was not released promptly');
    assert.deepEqual(await activeOperations(), { read: 0, write: 0, operations: [] });
  } finally {
    await holder.kill();
    await stowage('datastore', 'maintenance', 'clear', 'local');
  }
});

test('a stowage gc SIGKILLed mid-run stops counting, blocks no maintenance and leaves GC runnable', async () => {
  const gc = spawn(process.execPath, [STOWAGE_BIN, 'gc', 'local'], {
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const exited = new Promise((r) => gc.once('close', r));
  await waitUntil('gc admitted in the CLI process', () =>
    access.registry.list('local').some((op) => op.kind === 'gc' && op.pid === gc.pid),
  );
  gc.kill('SIGKILL');
  await exited;
  assert.deepEqual(await activeOperations(), { read: 0, write: 0, operations: [] });
  const set = await stowage(
    'datastore',
    'maintenance',
    'set',
    'local',
    'read-only',
    '--wait',
    '--timeout',
    '10s',
  );
  assert.equal(set.code, 0, set.stderr);
  const clear = await stowage('datastore', 'maintenance', 'clear', 'local');
  assert.equal(clear.code, 0, clear.stderr);
  const again = await stowage('gc', 'local');
  assert.equal(again.code, 0, again.stderr);
  assert.match(again.stdout, /TASK OK/);
});
