import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, readdirSync, statSync, utimesSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { RACY_MARGIN_MS } from '../../src/client/tar-archive.js';
import { treeCacheDir } from '../../src/cli/client/backup-command.js';
import { describeTree, makeTree } from '../client/tree-fixture.js';
import { runClient, startE2eServer, type E2eServer } from './backup-helpers.js';

let srv: E2eServer;
let src: string;

interface Summary {
  bytes: number;
  newBytes: number;
  uploadedBytes: number;
  reusedBytes: number;
  archives: Array<{ archive: string; 'index-reused'?: boolean }>;
}

before(async () => {
  srv = await startE2eServer('stowage-e2e-cache-');
  src = join(srv.root, 'src');
  makeTree(src, { scale: 2 * 1024 * 1024 });
  // A tree changed moments ago is never cached (racy); let it age past the margin.
  await new Promise((r) => setTimeout(r, RACY_MARGIN_MS + 200));
});

after(async () => {
  await srv?.stop();
});

async function backup(time: number, extra: string[] = []): Promise<Summary> {
  const res = await runClient(
    [
      'backup',
      `root.tar:${src}`,
      '--backup-id',
      'cached',
      '--backup-time',
      String(time),
      '--output-format',
      'json',
      ...extra,
    ],
    srv.env,
  );
  assert.equal(res.code, 0, res.stderr);
  return JSON.parse(res.stdout) as Summary;
}

async function restoreMatches(time: number, name: string): Promise<void> {
  const dst = join(srv.root, name);
  const snapshot = `host/cached/${new Date(time * 1000).toISOString().replace(/\.\d{3}Z$/, 'Z')}`;
  const r = await runClient(['restore', snapshot, 'root.tar', dst], srv.env);
  assert.equal(r.code, 0, r.stderr);
  assert.deepEqual(describeTree(dst, { rootMeta: true }), describeTree(src, { rootMeta: true }));
}

const cacheDir = () => treeCacheDir({ HOME: srv.env.HOME });

test('an unchanged tree is backed up from the previous index without reading it, and restores', async () => {
  const first = await backup(1_700_000_000);
  assert.notEqual(first.archives[0]!['index-reused'], true);
  assert.equal(readdirSync(cacheDir()).length, 1);

  const second = await backup(1_700_000_100);
  assert.equal(second.archives[0]!['index-reused'], true);
  assert.equal(second.uploadedBytes, 0);
  assert.equal(second.reusedBytes, first.bytes);
  await restoreMatches(1_700_000_100, 'restore-reused');
});

test('a file rewritten with the same size and its mtime put back is read and backed up again', async () => {
  const file = join(src, 'docs/text.txt');
  const st = statSync(file);
  const old = readFileSync(file);
  const changed = Buffer.from(old);
  changed.write('CHANGED', 1000);
  writeFileSync(file, changed);
  utimesSync(file, st.atime, st.mtime);
  assert.equal(statSync(file).size, st.size);
  assert.equal(statSync(file).mtimeMs, st.mtimeMs);
  // Aged past the racy margin: only the changed ctime tells the walk that the file changed.
  await new Promise((r) => setTimeout(r, RACY_MARGIN_MS + 200));

  const third = await backup(1_700_000_200);
  assert.notEqual(third.archives[0]!['index-reused'], true);
  assert.ok(third.newBytes > 0, 'the changed chunk was uploaded');
  await restoreMatches(1_700_000_200, 'restore-changed');
});

test('a cache entry that does not match the previous snapshot index is ignored', async () => {
  const [name] = readdirSync(cacheDir());
  const path = join(cacheDir(), name!);
  const entry = JSON.parse(readFileSync(path, 'utf8')) as { csum: string };
  entry.csum = 'ab'.repeat(32);
  writeFileSync(path, JSON.stringify(entry));

  const res = await backup(1_700_000_300);
  assert.notEqual(res.archives[0]!['index-reused'], true);
  assert.equal(res.uploadedBytes, 0, 'read in full, but every chunk was known');
  await restoreMatches(1_700_000_300, 'restore-ignored');
  // ...and the entry is right again afterwards.
  assert.equal((await backup(1_700_000_400)).archives[0]!['index-reused'], true);
});

test('--no-tree-cache reads every file even when nothing changed', async () => {
  const res = await backup(1_700_000_500, ['--no-tree-cache']);
  assert.notEqual(res.archives[0]!['index-reused'], true);
  assert.equal(res.uploadedBytes, 0);
});
