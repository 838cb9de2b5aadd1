import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { spawnClient, startE2eServer, type E2eServer } from './backup-helpers.js';

let srv: E2eServer;

before(async () => {
  srv = await startE2eServer('stowage-e2e-death-');
});

after(async () => {
  await srv?.stop();
});

test('a server that dies mid-backup is reported as a lost connection, not as "HTTP 0"', async () => {
  const tree = join(srv.root, 'tree');
  mkdirSync(tree);
  for (let i = 0; i < 8; i++) writeFileSync(join(tree, `f${i}`), randomBytes(6 * 1024 * 1024));
  const proc = spawnClient(
    ['backup', `data.tar:${tree}`, '--backup-id', 'victim', '--backup-time', '1700000000'],
    srv.env,
  );
  let stderr = '';
  proc.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise<number>((r) => proc.once('close', (code) => r(code ?? -1)));
  const deadline = Date.now() + 30_000;
  while (!existsSync(join(srv.storePath, 'host', 'victim'))) {
    assert.ok(Date.now() < deadline, `backup never started:\n${stderr}`);
    await new Promise((r) => setTimeout(r, 10));
  }
  await new Promise((r) => setTimeout(r, 200));
  srv.proc.kill('SIGKILL');
  const code = await exited;
  assert.notEqual(code, 0, stderr);
  const last = stderr.trim().split('\n').at(-1) ?? '';
  assert.doesNotMatch(stderr, /HTTP 0/);
  assert.match(last, /^error: connection to the server was lost/, stderr);
});
