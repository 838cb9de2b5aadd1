import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, lstatSync, mkdtempSync, readFileSync, readlinkSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Worker } from 'node:worker_threads';
import { ERR_RESTORE_WRITER_EXITED } from '../../src/errors.js';
import { RestoreWriter } from '../../src/sys/restore-writer.js';
import type { RestoredMetadata } from '../../src/sys/restore-files.js';

const meta = (mode: number, mtime: number): RestoredMetadata => ({
  mode,
  uid: process.getuid!(),
  gid: process.getgid!(),
  mtime,
});

async function* pieces(...parts: string[]): AsyncIterable<Buffer> {
  for (const p of parts) yield Buffer.from(p);
}

function tempDir(t: { after: (fn: () => void) => void }): string {
  const dir = mkdtempSync(join(tmpdir(), 'stowage-restore-writer-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

test('the writer thread makes directories, files and symlinks in order, with their metadata', async (t) => {
  const dir = tempDir(t);
  const p = (rel: string) => Buffer.from(join(dir, rel));
  const writer = new RestoreWriter(false);
  await writer.mkdir(p('d'));
  for (let i = 0; i < 600; i++) {
    const body = `file ${i}\n`.repeat(i % 50);
    await writer.file(p(`d/f${i}`), body.length, pieces(body), meta(0o640, 1_600_000_000 + i));
  }
  await writer.symlink(Buffer.from('f1'), p('d/link'), meta(0o777, 1_500_000_000));
  await writer.metadata(p('d'), meta(0o750, 1_400_000_000));
  await writer.close();

  for (const i of [0, 1, 49, 599]) {
    const f = join(dir, `d/f${i}`);
    assert.equal(readFileSync(f, 'utf8'), `file ${i}\n`.repeat(i % 50));
    assert.equal(statSync(f).mode & 0o7777, 0o640);
    assert.equal(statSync(f).mtimeMs, (1_600_000_000 + i) * 1000);
  }
  assert.equal(readlinkSync(join(dir, 'd/link')), 'f1');
  assert.equal(lstatSync(join(dir, 'd/link')).mtimeMs, 1_500_000_000 * 1000);
  // set after its 601 members were made: their creation did not move it
  assert.equal(statSync(join(dir, 'd')).mode & 0o7777, 0o750);
  assert.equal(statSync(join(dir, 'd')).mtimeMs, 1_400_000_000 * 1000);
});

test('the first call that fails fails the writer with its errno, and nothing queued after it runs', async (t) => {
  const dir = tempDir(t);
  const writer = new RestoreWriter(false);
  await writer.mkdir(Buffer.from(join(dir, 'missing/parent/d')));
  await writer.mkdir(Buffer.from(join(dir, 'after')));
  await assert.rejects(writer.flush(), (err: NodeJS.ErrnoException) => {
    assert.equal(err.code, 'ENOENT');
    assert.equal(err.syscall, 'mkdir');
    return true;
  });
  assert.equal(existsSync(join(dir, 'after')), false, 'the call after the failed one did not run');
  await assert.rejects(writer.mkdir(Buffer.from(join(dir, 'later'))), { code: 'ENOENT' });
  await writer.abort();
});

test('a writer thread that ends under a restore fails it at once instead of leaving it waiting', async (t) => {
  const dir = tempDir(t);
  const writer = new RestoreWriter(false);
  await writer.mkdir(Buffer.from(join(dir, 'd')));
  await writer.flush();
  // as if the thread crashed: it ends while batches are queued
  const thread = (writer as unknown as { worker: Worker }).worker;
  const ended = thread.terminate();
  const queued = (async () => {
    for (let i = 0; ; i++) {
      const body = 'x'.repeat(64 * 1024);
      await writer.file(Buffer.from(join(dir, `d/f${i}`)), body.length, pieces(body), meta(0o600, 0));
    }
  })();
  await ended;
  const failed = await Promise.race([
    queued.then(
      () => 'finished',
      (err: Error) => err,
    ),
    new Promise<string>((r) => setTimeout(() => r('still waiting after 10 s'), 10_000)),
  ]);
  assert.ok(ERR_RESTORE_WRITER_EXITED.is(failed), String(failed));
  assert.match((failed as Error).message, /the restore writer's thread exited with code 1/);
  await assert.rejects(writer.flush(), (err) => ERR_RESTORE_WRITER_EXITED.is(err));
  await writer.abort();
});
