/**
 * `npm start` (scripts/quickstart.mjs) as a newcomer uses it: it starts the server on localhost,
 * a SIGHUP restarts the server gracefully and the script keeps following the new process (it
 * used to exit, leaving the new server detached), and Ctrl-C then stops that one. The pid file
 * names whoever serves.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort, isAlive } from '../helpers/cli.js';
import { fileURLToPath } from 'node:url';

const SCRIPT = fileURLToPath(new URL('../../scripts/quickstart.mjs', import.meta.url));
const dir = mkdtempSync(join(tmpdir(), 'stowage-quickstart-'));
const started: number[] = [];

after(() => {
  for (const pid of started) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // gone
    }
  }
  rmSync(dir, { recursive: true, force: true });
});

async function until(what: string, cond: () => boolean, timeoutMs = 60_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

test('npm start follows a graceful restart and stops the new server on Ctrl-C', async () => {
  const port = await freePort();
  const runDir = join(dir, 'run');
  const pidFile = join(runDir, 'server.pid');
  // a datastore already configured, so the quick start creates none (65 536 chunk directories
  // take long on a busy machine); a bare chunk store is all the server opens at start
  const store = join(dir, 'store');
  mkdirSync(join(store, '.chunks', '0000'), { recursive: true });
  writeFileSync(join(store, '.lock'), '');
  mkdirSync(join(dir, 'etc'), { recursive: true });
  writeFileSync(join(dir, 'etc', 'datastore.cfg'), `datastore: existing\n\tpath ${store}\n`);
  const wrapper = spawn(process.execPath, [SCRIPT], {
    env: {
      ...process.env,
      STOWAGE_CONFIG_DIR: join(dir, 'etc'),
      STOWAGE_DATA_DIR: dir,
      STOWAGE_RUN_DIR: runDir,
      STOWAGE_LISTEN: `127.0.0.1:${port}`,
      STOWAGE_ROOT_PASSWORD: 'quick-start-pw',
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  started.push(wrapper.pid!);
  let output = '';
  wrapper.stdout!.on('data', (d: Buffer) => (output += d.toString()));
  wrapper.stderr!.on('data', (d: Buffer) => (output += d.toString()));
  let exitCode: number | null | undefined;
  wrapper.on('exit', (code) => (exitCode = code));

  await until(
    'the server to listen',
    () => /stowage server listening on https:\/\/127\.0\.0\.1:/.test(output),
    300_000,
  );
  const first = Number(readFileSync(pidFile, 'utf8'));
  started.push(first);
  assert.ok(isAlive(first));

  wrapper.kill('SIGHUP');
  await until('the new server to take over', () => {
    const pid = existsSync(pidFile) ? Number(readFileSync(pidFile, 'utf8')) : first;
    return pid !== first && !isAlive(first);
  });
  const second = Number(readFileSync(pidFile, 'utf8'));
  started.push(second);
  assert.ok(isAlive(second), 'the new server runs');
  await new Promise((r) => setTimeout(r, 1500)); // the script polls every 500 ms
  assert.equal(exitCode, undefined, `npm start is still running after the restart:\n${output}`);

  wrapper.kill('SIGINT');
  await until('npm start to end', () => exitCode !== undefined, 30_000);
  assert.equal(exitCode, 0);
  await until('the new server to stop', () => !isAlive(second), 30_000);
  assert.equal(existsSync(pidFile), false, 'the pid file goes with the server');
  assert.match(output, /received SIGINT, shutting down/);
});
