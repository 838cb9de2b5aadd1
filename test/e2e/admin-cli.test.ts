/**
 * The `stowage` admin CLI against a real `stowage server` process over HTTPS: the quick start,
 * and the maintenance commands an operator uses (design §4 CLI, invariants 4–6).
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { spawn } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { StowagePaths } from '../../src/config/paths.js';
import { HolderProcess } from '../helpers/holder-process.js';
import { STOWAGE_BIN, ServerProcess, freePort, runCli } from '../helpers/cli.js';

let root: string;
let paths: StowagePaths;
let env: NodeJS.ProcessEnv;
let server: ServerProcess;
let holder: HolderProcess;
const cfg = () => readFileSync(join(paths.configDir, 'datastore.cfg'), 'utf8');

const stowage = (...args: string[]) => runCli(STOWAGE_BIN, args, env);

before(async () => {
  root = mkdtempSync(join(tmpdir(), 'stowage-cli-'));
  paths = { configDir: join(root, 'etc'), dataDir: root, runDir: join(root, 'run') };
  const port = await freePort();
  env = { STOWAGE_DATA_DIR: root, STOWAGE_SERVER: `127.0.0.1:${port}`, STOWAGE_ROOT_PASSWORD: '' };
  server = new ServerProcess(['--quickstart', '--listen', `127.0.0.1:${port}`], env);
  await server.started();
  holder = await new HolderProcess(paths).start();
});

after(async () => {
  await holder?.kill();
  await server?.stop();
  rmSync(root, { recursive: true, force: true });
});

test('the quick start creates the datastore "local" and prints the admin password once', async () => {
  assert.match(server.output, /datastore 'local' ready/);
  assert.match(server.output, /root@pam password: \S+/);
  assert.match(server.output, /fingerprint: ([0-9a-f]{2}:){31}[0-9a-f]{2}/);
  const list = await stowage('datastore', 'list');
  assert.equal(list.code, 0, list.stderr);
  assert.match(list.stdout, /^local\s+\S+datastores\/local\s+none/m);
  const json = await stowage('--output-format', 'json', 'datastore', 'list');
  assert.deepEqual(
    (JSON.parse(json.stdout) as Array<{ name: string }>).map((s) => s.name),
    ['local'],
  );
});

test('maintenance set --if-idle refuses while a backup runs and changes nothing', async () => {
  const id = await holder.hold('local', 'ingest', 'backup', 'host/web01');
  try {
    const before = cfg();
    const r = await stowage(
      'datastore',
      'maintenance',
      'set',
      'local',
      'read-only',
      '--message',
      'disk swap',
      '--if-idle',
    );
    assert.equal(r.code, 3, r.stderr);
    assert.match(r.stderr, /^error: .*not idle.*backup host\/web01/);
    assert.equal(cfg(), before);
  } finally {
    await holder.send({ cmd: 'release', id });
  }
});

test('maintenance set is graceful, --wait reports what still runs, and the mode refuses new writes', async () => {
  const id = await holder.hold('local', 'ingest', 'backup', 'host/web01');
  const set = await stowage(
    'datastore',
    'maintenance',
    'set',
    'local',
    'read-only',
    '--message',
    'disk swap',
    '--wait',
    '--timeout',
    '1s',
  );
  assert.equal(set.code, 6, `timeout exit code expected: ${set.stdout}${set.stderr}`);
  assert.match(set.stdout, /now in read-only maintenance mode/);
  assert.match(set.stdout, /waiting for 1 conflicting operation\(s\):\n {2}backup host\/web01/);
  assert.match(
    set.stderr,
    /did not drain within 1s: 1 conflicting operation\(s\) still running: backup host\/web01/,
  );
  assert.match(cfg(), /maintenance-mode read-only,message="disk swap"/);

  const show = await stowage('datastore', 'maintenance', 'show', 'local');
  assert.match(
    show.stdout,
    /maintenance: read-only \(disk swap\)\n1 conflicting operation\(s\) still running:/,
  );
  assert.match(show.stdout, /ingest\s+backup\s+host\/web01/);

  const refused = await holder.send({ cmd: 'lookup', store: 'local', op: 'ingest' });
  assert.equal(refused.message, "datastore 'local' is unavailable: read-only maintenance mode: disk swap");
  const reads = await holder.send({ cmd: 'lookup', store: 'local', op: 'read' });
  assert.equal(reads.ok, true, 'restores go on under read-only');
  await holder.send({ cmd: 'release', id: reads.id });

  setTimeout(() => void holder.send({ cmd: 'release', id }), 1500);
  const wait = await stowage('datastore', 'maintenance', 'wait', 'local', '--timeout', '60s');
  assert.equal(wait.code, 0, wait.stderr);
  assert.match(wait.stdout, /datastore 'local' drained/);
  const ops = await stowage('datastore', 'active-operations', 'local');
  assert.match(
    ops.stdout,
    /^read 0, write 0 \(ingest 0, reclaim 0\), lookup 0; maintenance: read-only \(disk swap\)/,
  );

  const clear = await stowage('datastore', 'maintenance', 'clear', 'local');
  assert.equal(clear.code, 0, clear.stderr);
  assert.doesNotMatch(cfg(), /maintenance-mode/);
});

test('bad input gets a one-line error and a non-zero exit, and changes nothing', async () => {
  const before = cfg();
  const long = await stowage(
    'datastore',
    'maintenance',
    'set',
    'local',
    'offline',
    '--message',
    'x'.repeat(65),
  );
  assert.equal(long.code, 2);
  assert.equal(long.stderr.trim().split('\n').length, 1);
  assert.match(long.stderr, /message is 65 characters long, at most 64/);
  const type = await stowage('datastore', 'maintenance', 'set', 'local', 'frozen');
  assert.equal(type.code, 2);
  assert.match(type.stderr, /invalid maintenance type 'frozen'/);
  const missing = await stowage('datastore', 'maintenance', 'set', 'nope', 'offline');
  assert.equal(missing.code, 4);
  assert.match(missing.stderr, /nope/);
  assert.equal(cfg(), before);
});

test('datastore remove that times out waiting for running operations exits 6, as maintenance set --wait does', async () => {
  const create = await stowage('datastore', 'create', 'retiring', join(root, 'retiring'));
  assert.equal(create.code, 0, create.stderr);
  const id = await holder.hold('retiring', 'read', 'restore', 'host/web01');
  try {
    const r = await stowage('datastore', 'remove', 'retiring', '--timeout', '1s');
    assert.equal(r.code, 6, `${r.stdout}${r.stderr}`);
    assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
    assert.match(r.stderr, /^error: task failed: .*restore host\/web01/);
    assert.match(cfg(), /^datastore: retiring$/m, 'the datastore is still configured');
  } finally {
    await holder.send({ cmd: 'release', id });
  }
  const removed = await stowage('datastore', 'remove', 'retiring');
  assert.equal(removed.code, 0, removed.stderr);
  assert.doesNotMatch(cfg(), /retiring/);
});

test("tokens are named as PBS spells them ('user@realm!name') or as user and name", async () => {
  const pbs = await stowage('token', 'create', 'root@pam!tok1', '--comment', 'as PBS');
  assert.equal(pbs.code, 0, pbs.stderr);
  assert.match(pbs.stdout, /root@pam!tok1/);
  const apart = await stowage('token', 'create', 'root@pam', 'tok2');
  assert.equal(apart.code, 0, apart.stderr);
  const list = await stowage('token', 'list', 'root@pam');
  assert.match(list.stdout, /root@pam!tok1\s+true\s+as PBS/);
  assert.match(list.stdout, /root@pam!tok2/);
  const both = await stowage('token', 'create', 'root@pam!tok3', 'tok3');
  assert.equal(both.code, 2);
  assert.match(both.stderr, /^error: give the token as 'root@pam!tok3' or as user and name, not both$/m);
  const neither = await stowage('token', 'create', 'root@pam');
  assert.equal(neither.code, 2);
  assert.match(neither.stderr, /names no token/);
  assert.equal((await stowage('token', 'remove', 'root@pam!tok1')).code, 0);
  assert.equal((await stowage('token', 'remove', 'root@pam', 'tok2')).code, 0);
  assert.doesNotMatch((await stowage('token', 'list', 'root@pam')).stdout, /tok1|tok2/);
});

test('output piped into a reader that stops early ends the command quietly', async () => {
  // `true` reads nothing and exits at once: every write of the CLI meets a closed pipe
  const child = spawn(
    'bash',
    ['-c', `"${process.execPath}" "${STOWAGE_BIN}" token list root@pam | true; exit \${PIPESTATUS[0]}`],
    {
      env: { ...process.env, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const code = await new Promise<number | null>((r) => child.on('exit', r));
  assert.equal(stderr, '');
  assert.equal(code, 0);
});
