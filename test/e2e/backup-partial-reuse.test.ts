/**
 * The nightly case: a tree backed up before, one file changed since. The tree cache reuses the
 * unchanged files' chunks without reading them (tree-reuse.ts), and the index is exactly the one
 * a full read produces: for a tar archive (runs of unchanged entries) and for a pxar archive
 * (runs of unchanged files' contents and the items between them, and whole directories whose
 * members did not change, directory-reuse.ts), with the catalog a full read produces.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { chmodSync, mkdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { decodeBlob } from '../../src/datastore/data-blob.js';
import { RACY_MARGIN_MS } from '../../src/client/tar-archive.js';
import { describeTree, makeTree } from '../client/tree-fixture.js';
import { runClient, startE2eServer, type E2eServer } from './backup-helpers.js';

type Format = 'tar' | 'pxar';

let srv: E2eServer;
let src: string;
const FILE = 1024 * 1024;

interface Summary {
  bytes: number;
  newBytes: number;
  reusedBytes: number;
  cachedBytes: number;
  uploadedBytes: number;
  archives: Array<{ archive: string; 'index-reused'?: boolean }>;
}

const age = () => new Promise((r) => setTimeout(r, RACY_MARGIN_MS + 200));
const iso = (time: number) => new Date(time * 1000).toISOString().replace(/\.\d{3}Z$/, 'Z');

before(async () => {
  srv = await startE2eServer('stowage-e2e-partial-');
  src = join(srv.root, 'src');
  makeTree(src, { scale: 1024 * 1024 });
  mkdirSync(join(src, 'data'));
  for (let i = 0; i < 8; i++) writeFileSync(join(src, 'data', `f${i}.bin`), randomBytes(FILE));
  await age();
});

after(async () => {
  await srv?.stop();
});

async function backup(
  format: Format,
  time: number,
  extra: string[] = [],
  id: string = format,
): Promise<Summary> {
  const res = await runClient(
    [
      'backup',
      `root.${format}:${src}`,
      '--backup-id',
      id,
      '--backup-time',
      String(time),
      '--chunk-size',
      '64',
      '--output-format',
      'json',
      ...extra,
    ],
    srv.env,
  );
  assert.equal(res.code, 0, res.stderr);
  return JSON.parse(res.stdout) as Summary;
}

/** The archive's (or another file's) index checksum in the snapshot's manifest, read from the datastore. */
function archiveCsum(
  format: Format,
  time: number,
  id: string = format,
  file = `root.${format}.didx`,
): string {
  const raw = readFileSync(join(srv.storePath, 'host', id, iso(time), 'index.json.blob'));
  const manifest = JSON.parse(decodeBlob(raw).toString()) as {
    files: Array<{ filename: string; csum: string }>;
  };
  return manifest.files.find((f) => f.filename === file)!.csum;
}

for (const format of ['tar', 'pxar'] as const)
  test(`${format}: after one file changed, only that file is read, and the index is the one a full read gives`, async () => {
    const changed = format === 'tar' ? 'f3.bin' : 'f5.bin';
    const first = await backup(format, 1_700_000_000);
    assert.equal(first.cachedBytes, 0);

    writeFileSync(join(src, 'data', changed), randomBytes(FILE));
    await age();
    const second = await backup(format, 1_700_000_100);
    assert.notEqual(second.archives[0]!['index-reused'], true);
    assert.ok(second.newBytes >= FILE, 'the changed file was uploaded');
    // Read: the changed file plus at most the chunk it starts in and the one after it (64 KiB
    // average, 256 KiB at most); the small files and the archive's headers elsewhere are reused
    // as well, and pxar's runs of unchanged files cost no read where they are passed on in parts.
    const read = second.bytes - second.cachedBytes;
    assert.ok(read < FILE + 2 * 256 * 1024, `read ${read} of ${second.bytes} bytes`);
    assert.ok(second.cachedBytes >= 6 * FILE - 8 * 256 * 1024, `reused ${second.cachedBytes} bytes`);

    const dst = join(srv.root, `restore-${format}`);
    const r = await runClient(
      ['restore', `host/${format}/${iso(1_700_000_100)}`, `root.${format}`, dst],
      srv.env,
    );
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(describeTree(dst, { rootMeta: true }), describeTree(src, { rootMeta: true }));

    // A full read of the same tree cuts the same chunks: the same index, nothing new to upload.
    const full = await backup(format, 1_700_000_200, ['--no-tree-cache']);
    assert.equal(full.cachedBytes, 0);
    assert.equal(full.uploadedBytes, 0);
    assert.equal(archiveCsum(format, 1_700_000_200), archiveCsum(format, 1_700_000_100));
    // pxar: the directories without the change were taken whole, their catalog part from the
    // metadata walk's record; the catalog is the one the full walk made
    if (format === 'pxar') {
      const catalog = (time: number) => archiveCsum(format, time, format, 'catalog.pcat1.didx');
      assert.equal(catalog(1_700_000_200), catalog(1_700_000_100));
    }
  });

test('pxar: when only items between unchanged files changed (a mode, a symlink), the index is still the one a full read gives', async () => {
  const id = 'pxar-items';
  await backup('pxar', 1_700_001_000, [], id);
  // no file's contents change: only a directory's ENTRY, a symlink's target and the root
  // directory's mtime (the archive's first items) differ from the previous archive
  chmodSync(join(src, 'docs', 'nested'), 0o750);
  rmSync(join(src, 'link-dangling'));
  symlinkSync('points/elsewhere/now', join(src, 'link-dangling'));
  await age();
  const second = await backup('pxar', 1_700_001_100, [], id);
  assert.notEqual(second.archives[0]!['index-reused'], true);
  assert.ok(second.cachedBytes >= 6 * FILE, `reused ${second.cachedBytes} bytes`);

  const full = await backup('pxar', 1_700_001_200, ['--no-tree-cache'], id);
  assert.equal(full.uploadedBytes, 0);
  assert.equal(archiveCsum('pxar', 1_700_001_200, id), archiveCsum('pxar', 1_700_001_100, id));
});
