import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { syncFilesystem, syncfsHelperPid } from '../../src/sys/syncfs.js';
import { dirtyBytes } from '../helpers/files.js';

const MiB = 1024 * 1024;

test('syncFilesystem writes the file system’s dirty pages to disk', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'stowage-syncfs-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  // the kernel writes back on its own only after 30 s or past 10 % of memory
  writeFileSync(join(dir, 'data'), Buffer.alloc(64 * MiB, 7));
  const before = dirtyBytes();
  await syncFilesystem(dir);
  const after = dirtyBytes();
  assert.ok(after < before - 32 * MiB, `dirty ${before} bytes before the sync, ${after} after`);
});

test('each sync gets its own answer, a failed one names the path, and the helper outlives it', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'stowage-syncfs-'));
  try {
    const missing = join(dir, 'no such directory');
    const results = await Promise.allSettled(
      Array.from({ length: 10 }, (_, i) => syncFilesystem(i % 3 === 1 ? missing : dir)),
    );
    assert.deepEqual(
      results.map((r) => r.status),
      Array.from({ length: 10 }, (_, i) => (i % 3 === 1 ? 'rejected' : 'fulfilled')),
    );
    const failed = results[1] as PromiseRejectedResult;
    assert.match(String(failed.reason), /sync -f .*no such directory failed/);
    const pid = syncfsHelperPid();
    assert.ok(pid, 'the helper runs');
    await syncFilesystem(dir);
    assert.equal(syncfsHelperPid(), pid, 'one helper for every call, no process per sync');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a helper that died is replaced; what it had not answered fails (the caller falls back)', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'stowage-syncfs-'));
  try {
    await syncFilesystem(dir);
    const pid = syncfsHelperPid()!;
    process.kill(pid, 'SIGKILL');
    // the kill lands before or after the helper read this one: answered or failed, never left hanging
    await syncFilesystem(dir).catch(() => {});
    await new Promise((r) => setTimeout(r, 100));
    await syncFilesystem(dir);
    const now = syncfsHelperPid();
    assert.ok(now && now !== pid, `a new helper (was ${pid}, now ${now})`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a process that synced exits on its own: the idle helper does not keep it alive', () => {
  const module = fileURLToPath(new URL('../../src/sys/syncfs.ts', import.meta.url));
  const script = `import { syncFilesystem } from ${JSON.stringify(module)}; await syncFilesystem(${JSON.stringify(tmpdir())}); console.log('synced');`;
  const r = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], {
    encoding: 'utf8',
    timeout: 20_000,
  });
  assert.equal(r.error, undefined, 'the process ended within 20 s');
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.stdout.trim(), 'synced');
});
