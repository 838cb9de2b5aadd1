/**
 * Backups and restores aborted by the server, again and again, in one client process: the client
 * survives them all. Regression test for a native heap corruption (sys/http2-destroy.ts): a
 * client dropping its HTTP/2 session from the failed upload's handler crashed with glibc's
 * "corrupted size vs. prev_size" within a few iterations. The client runs in a child process
 * with glibc's heap perturbation on, so damage shows as an abort rather than passing unseen.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { ROOT_PASSWORD, runClient, startE2eServer, type E2eServer } from '../e2e/backup-helpers.js';
import { randomTree } from './fault-helpers.js';

const ITERATIONS = 25;
let srv: E2eServer;

before(async () => {
  srv = await startE2eServer('stowage-aborted-sessions-', { env: { SLOW_CHUNK_MS: '20' } });
  const tree = randomTree(join(srv.root, 'tree'), 4, 1024 * 1024);
  const seeded = await runClient(
    [
      'backup',
      `data.tar:${tree}`,
      '--backup-id',
      'seed',
      '--backup-time',
      '1700000000',
      '--chunk-size',
      '64',
    ],
    srv.env,
  );
  assert.equal(seeded.code, 0, seeded.stderr);
});
after(() => srv?.stop());

test(`${ITERATIONS} backups and restores aborted by the server: the client process lives through all of them`, async () => {
  const child = spawn(
    process.execPath,
    ['--import', 'tsx', join(import.meta.dirname, 'fixtures/aborted-session-loop.ts')],
    {
      env: {
        ...process.env,
        GLIBC_TUNABLES: 'glibc.malloc.perturb=165',
        HOST: srv.host,
        PORT: String(srv.port),
        FINGERPRINT: srv.fingerprint,
        PASSWORD: ROOT_PASSWORD,
        STORE: 'local',
        ITERATIONS: String(ITERATIONS),
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  let out = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr.on('data', (d: Buffer) => (out += d.toString()));
  const [code, signal] = await new Promise<[number | null, NodeJS.Signals | null]>((r) =>
    child.once('exit', (c, s) => r([c, s])),
  );
  assert.deepEqual([code, signal], [0, null], out);
  const m = /aborted: (\d+) backups, (\d+) restores/.exec(out);
  assert.ok(m, out);
  // the aborts really hit running sessions (a loop of finished ones would prove nothing)
  assert.ok(Number(m[1]) >= ITERATIONS - 2, out);
});
