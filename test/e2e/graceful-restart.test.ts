import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { request as httpsRequest } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { DatastoreConfigFile } from '../../src/config/datastore-config.js';
import { SqliteOperationRegistry } from '../../src/maintenance/sqlite-operation-registry.js';
import { isAlive } from '../helpers/cli.js';
import { findListeningFd } from '../../src/server/restart.js';

const FIXTURE = fileURLToPath(new URL('./fixtures/restart-server.ts', import.meta.url));
const root = mkdtempSync(join(tmpdir(), 'stowage-restart-'));
const pids = new Set<number>();

after(async () => {
  for (const pid of pids) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
  rmSync(root, { recursive: true, force: true });
});

async function until(
  what: string,
  cond: () => boolean | Promise<boolean>,
  timeoutMs = 60_000,
): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

function post(url: string, path: string, body: unknown): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = httpsRequest(
      new URL(`/api2/json${path}`, url),
      {
        method: 'POST',
        rejectUnauthorized: false,
        headers: { 'content-type': 'application/json' },
        agent: false,
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode!, body: Buffer.concat(chunks).toString() }));
      },
    );
    req.on('error', reject);
    req.end(JSON.stringify(body));
  });
}

test('a restarted server hands its port to a new process while the old one finishes its operations', async () => {
  const store = join(root, 'stores', 'store1');
  mkdirSync(join(store, '.chunks', '0000'), { recursive: true });
  writeFileSync(join(store, '.lock'), '');
  await new DatastoreConfigFile(join(root, 'etc')).update(
    (s) => void s.set('store1', { name: 'store1', path: store }),
  );

  const env = { ...process.env };
  delete env.STOWAGE_ROOT_PASSWORD; // so the first start generates and prints a password
  const old: ChildProcess = spawn(process.execPath, ['--import', 'tsx', FIXTURE, root], {
    stdio: ['ignore', 'pipe', 'inherit'],
    env,
  });
  pids.add(old.pid!);
  let output = '';
  old.stdout!.on('data', (c: Buffer) => (output += c.toString()));
  const exited = new Promise<number | null>((r) => old.on('exit', (code) => r(code)));

  await until('the first server', () => /serving (https:\S+)/.test(output));
  const url = /serving (https:\S+)/.exec(output)![1]!;
  const password = /root@pam password: (\S+)/.exec(output)![1]!;
  const fingerprint = /fingerprint: (\S+)/.exec(output)![1]!;
  const port = Number(new URL(url).port);
  const login = () => post(url, '/access/ticket', { username: 'root@pam', password });
  assert.equal((await login()).status, 200);

  const registry = new SqliteOperationRegistry(join(root, 'run', 'active-operations.sqlite'));
  try {
    await until('the held operation', () => registry.counts('store1').write === 1);
    assert.deepEqual(
      registry.list('store1').map((op) => op.pid),
      [old.pid],
    );

    old.kill('SIGHUP');
    await until('the handover', () => /new server process (\d+) took over/.test(output));
    const newPid = Number(/new server process (\d+) took over/.exec(output)![1]);
    pids.add(newPid);
    assert.notEqual(newPid, old.pid);

    // the old process has closed its listener but is still running its task ...
    await until('the old listener to close', () => findListeningFd(port, old.pid!) === undefined);
    assert.ok(isAlive(old.pid!));
    assert.notEqual(findListeningFd(port, newPid), undefined);
    // ... so these are served by the new process, with the same certificate and password
    for (let i = 0; i < 3; i++) assert.equal((await login()).status, 200);
    // the old process's operation still counts, under its own pid
    assert.deepEqual(registry.counts('store1'), { read: 0, ingest: 1, reclaim: 0, lookup: 0, write: 1 });
    assert.deepEqual(
      registry.list('store1').map((op) => op.pid),
      [old.pid],
    );

    writeFileSync(join(root, 'release'), '');
    assert.equal(await exited, 0);
    assert.deepEqual(registry.counts('store1'), { read: 0, ingest: 0, reclaim: 0, lookup: 0, write: 0 });
    assert.equal((await login()).status, 200);
    assert.ok(isAlive(newPid));

    // the new process neither printed a password nor made a new certificate
    assert.equal(output.match(/root@pam password:/g)?.length, 1);
    assert.deepEqual(
      [...output.matchAll(/fingerprint: (\S+)/g)].map((m) => m[1]),
      [fingerprint, fingerprint],
    );
    assert.match(
      output,
      new RegExp(`\\[${old.pid}\\] restart: old server process ${old.pid} finished, exiting`),
    );

    process.kill(newPid, 'SIGTERM');
    await until('the new server to stop', () => !isAlive(newPid), 20_000);
  } finally {
    registry.close();
  }
});
