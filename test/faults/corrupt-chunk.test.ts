/**
 * A chunk corrupted on disk (bit rot, a bad disk): verify finds it, names it in the task log and
 * marks the snapshot failed; a restore of that snapshot fails with a clear error naming the chunk
 * instead of writing wrong data.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';

import { existsSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { runCli, STOWAGE_BIN } from '../helpers/cli.js';
import { backupArgs, randomTree } from './fault-helpers.js';
import { runClient, startE2eServer, type E2eServer } from '../e2e/backup-helpers.js';

let srv: E2eServer;

before(async () => {
  srv = await startE2eServer('stowage-fault-corrupt-');
});

after(async () => {
  await srv?.stop();
});

function chunkFiles(): string[] {
  const out: string[] = [];
  const dir = join(srv.storePath, '.chunks');
  for (const sub of readdirSync(dir))
    for (const n of readdirSync(join(dir, sub))) out.push(join(dir, sub, n));
  return out;
}

test('a corrupted chunk is found by verify and makes the restore fail instead of writing wrong data', async () => {
  const src = randomTree(join(srv.root, 'src'), 1, 3 * 1024 * 1024);
  const b = await runClient(backupArgs(src, 'rot', 1_700_000_000), srv.env);
  assert.equal(b.code, 0, b.stderr);

  // flip bytes in the middle of one chunk file (same size: only a content check finds it)
  const victim = chunkFiles().sort()[0]!;
  const bytes = readFileSync(victim);
  for (let i = 0; i < 16; i++) bytes[Math.floor(bytes.length / 2) + i]! ^= 0xff;
  writeFileSync(victim, bytes);
  const digest = victim.slice(-64);

  const source = readFileSync(join(src, 'f0'));
  const admin = ['--config-dir', join(srv.root, 'etc'), '--server', `127.0.0.1:${srv.port}`];
  const snapshot = 'host/rot/2023-11-14T22:13:20Z';

  /** Restore into a new directory: must fail naming the chunk, and write no wrong byte. */
  const restoreFails = async (dst: string, why: RegExp) => {
    const r = await runClient(['restore', snapshot, 'data.tar', dst], srv.env);
    assert.notEqual(r.code, 0, 'the restore of a snapshot with a corrupt chunk succeeded');
    assert.match(r.stderr, why);
    // what was written before the failure is a correct prefix of the file, nothing else
    const out = join(dst, 'f0');
    if (existsSync(out)) {
      const written = readFileSync(out);
      assert.ok(written.length < source.length);
      assert.ok(written.equals(source.subarray(0, written.length)), 'the restore wrote wrong data');
    }
  };
  await restoreFails(join(srv.root, 'r1'), new RegExp(`^error: chunk ${digest}: CRC mismatch`, 'm'));

  const v = await runCli(STOWAGE_BIN, [...admin, 'verify', 'local']);
  assert.notEqual(v.code, 0, 'verify of a datastore with a corrupt chunk succeeded');
  assert.match(v.stdout, new RegExp(`can't verify chunk ${digest} - chunk ${digest}: CRC mismatch`));
  assert.match(v.stdout, new RegExp(`corrupted chunk renamed to ".*/${digest}\\.0\\.bad"`));
  assert.match(
    v.stdout,
    /Failed to verify the following snapshots\/groups:\n.*\thost\/rot\/2023-11-14T22:13:20Z/,
  );
  assert.match(v.stderr, /error: task failed: verification failed/);
  const snaps = await runClient(['snapshots', '--output-format', 'json'], srv.env);
  assert.equal(snaps.code, 0, snaps.stderr);
  const listed = JSON.parse(snaps.stdout) as Array<{ verification?: { state: string } }>;
  assert.equal(listed[0]?.verification?.state, 'failed');
  // the chunk is quarantined now: the restore still fails, by name
  await restoreFails(join(srv.root, 'r2'), new RegExp(`^error: chunk ${digest} not found`, 'm'));

  // the next backup does not build on the failed snapshot: it uploads the chunk again, and verifies
  const again = await runClient(backupArgs(src, 'rot', 1_700_000_001), srv.env);
  assert.equal(again.code, 0, again.stderr);
  assert.ok(existsSync(victim), 'the good copy of the chunk was not uploaded again');
  const dst = join(srv.root, 'r3');
  const ok = await runClient(['restore', 'host/rot/2023-11-14T22:13:21Z', 'data.tar', dst], srv.env);
  assert.equal(ok.code, 0, ok.stderr);
  assert.ok(readFileSync(join(dst, 'f0')).equals(source));
});
