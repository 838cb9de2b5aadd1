/**
 * The admin CLI with the server stopped (as `proxmox-backup-manager` works): listing datastores,
 * putting one offline before the server starts, and seeing the operations another process runs
 * all work on the configuration directly, under the same locks and registry; the server started
 * afterwards enforces the mode. Before, every command failed with ECONNREFUSED.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { StowagePaths } from '../../src/config/paths.js';
import { HolderProcess } from '../helpers/holder-process.js';
import { STOWAGE_BIN, ServerProcess, freePort, runCli } from '../helpers/cli.js';

let root: string;
let paths: StowagePaths;
let env: NodeJS.ProcessEnv;
let port: number;
const cfg = () => readFileSync(join(paths.configDir, 'datastore.cfg'), 'utf8');
const stowage = (...args: string[]) => runCli(STOWAGE_BIN, args, env);

before(async () => {
  root = mkdtempSync(join(tmpdir(), 'stowage-cli-offline-'));
  paths = { configDir: join(root, 'etc'), dataDir: root, runDir: join(root, 'run') };
  // a bare chunk store: the server opens nothing more at start
  const store = join(root, 'store1');
  mkdirSync(join(store, '.chunks', '0000'), { recursive: true });
  writeFileSync(join(store, '.lock'), '');
  mkdirSync(paths.configDir, { recursive: true });
  writeFileSync(join(paths.configDir, 'datastore.cfg'), `datastore: store1\n\tpath ${store}\n`);
  port = await freePort();
  env = { STOWAGE_DATA_DIR: root, STOWAGE_SERVER: `127.0.0.1:${port}`, STOWAGE_ROOT_PASSWORD: 'offline-pw' };
  // one start creates the keys and certificate the CLI signs its ticket with; then it stops
  const first = new ServerProcess(['--listen', `127.0.0.1:${port}`], env);
  await first.started();
  await first.stop();
});

after(() => {
  rmSync(root, { recursive: true, force: true });
});

test('with the server stopped, list, maintenance and active-operations work on the configuration', async () => {
  const list = await stowage('datastore', 'list');
  assert.equal(list.code, 0, list.stderr);
  assert.match(list.stdout, /^store1\s+\S+store1\s+none/m);
  assert.match(list.stderr, /no server is running here; working on the configuration directly/);

  const holder = await new HolderProcess(paths).start();
  try {
    const id = await holder.hold('store1', 'read', 'restore', 'host/web01');
    const set = await stowage(
      'datastore',
      'maintenance',
      'set',
      'store1',
      'offline',
      '--message',
      'disk swap',
    );
    assert.equal(set.code, 0, set.stderr);
    assert.match(cfg(), /maintenance-mode offline,message="disk swap"/);
    const ops = await stowage('datastore', 'active-operations', 'store1');
    assert.equal(ops.code, 0, ops.stderr);
    assert.match(
      ops.stdout,
      /read 1, write 0 \(ingest 0, reclaim 0\), lookup 0; maintenance: offline \(disk swap\); 1 conflicting/,
    );
    assert.match(ops.stdout, /restore\s+host\/web01/);
    await holder.send({ cmd: 'release', id });
    const wait = await stowage('datastore', 'maintenance', 'wait', 'store1', '--timeout', '30s');
    assert.equal(wait.code, 0, wait.stderr);
    assert.match(wait.stdout, /drained/);
  } finally {
    await holder.stop();
  }

  // the server started now enforces what was set while it was down
  const server = new ServerProcess(['--listen', `127.0.0.1:${port}`], env);
  try {
    await server.started();
    const refused = await stowage('datastore', 'maintenance', 'show', 'store1');
    assert.equal(refused.code, 0, refused.stderr);
    assert.match(refused.stdout, /maintenance: offline \(disk swap\)/);
    assert.doesNotMatch(refused.stderr, /no server is running/, 'with a server, the CLI talks to it');
    const clear = await stowage('datastore', 'maintenance', 'clear', 'store1');
    assert.equal(clear.code, 0, clear.stderr);
  } finally {
    await server.stop();
  }
  assert.doesNotMatch(cfg(), /maintenance-mode/);
});
