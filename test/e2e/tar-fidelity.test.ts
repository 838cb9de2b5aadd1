/**
 * What a tar archive keeps, through the real client and server: mtimes of any range (and to the
 * nanosecond when asked), FIFOs, devices, hard links, sparse files; and what it cannot keep is
 * said on every run, also when the tree cache reuses the whole previous archive.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import {
  linkSync,
  lstatSync,
  mkdirSync,
  openSync,
  closeSync,
  readFileSync,
  utimesSync,
  writeFileSync,
  writeSync,
} from 'node:fs';
import { createServer, type Server } from 'node:net';
import { join } from 'node:path';
import { decodeBlob } from '../../src/datastore/data-blob.js';
import { decodeDynamicIndex } from '../../src/datastore/index.js';
import { RACY_MARGIN_MS } from '../../src/client/tar-archive.js';
import { runClient, runTreeBackup, startE2eServer, type E2eServer } from './backup-helpers.js';

let srv: E2eServer;

before(async () => {
  srv = await startE2eServer('stowage-e2e-tarfid-');
});

after(async () => {
  await srv?.stop();
});

const iso = (time: number) => new Date(time * 1000).toISOString().replace(/\.\d{3}Z$/, 'Z');
const age = () => new Promise((r) => setTimeout(r, RACY_MARGIN_MS + 200));

async function backup(dir: string, id: string, time: number, extra: string[] = []) {
  const res = await runTreeBackup(srv.env, dir, id, time, extra);
  assert.equal(res.code, 0, res.stderr);
  return res;
}

async function restore(id: string, time: number, name: string) {
  const dst = join(srv.root, name);
  const res = await runClient(['restore', `host/${id}/${iso(time)}`, 'root.tar', dst], srv.env);
  assert.equal(res.code, 0, res.stderr);
  return { dst, stderr: res.stderr };
}

/** The archive's tar stream, put together from the datastore's index and chunks. */
function storedStream(id: string, time: number): Buffer {
  const index = decodeDynamicIndex(readFileSync(join(srv.storePath, 'host', id, iso(time), 'root.tar.didx')));
  const parts: Buffer[] = [];
  for (let i = 0; i < index.count; i++) {
    const hex = index.digest(i).toString('hex');
    parts.push(decodeBlob(readFileSync(join(srv.storePath, '.chunks', hex.slice(0, 4), hex)), 'chunk'));
  }
  return Buffer.concat(parts);
}

/** `tar tvf --full-time` of the stored stream (GNU tar, UTC): name → "date time". */
function gnuTarListing(id: string, time: number): Map<string, string> {
  const file = join(srv.root, `${id}-${time}.tar`);
  writeFileSync(file, storedStream(id, time));
  const out = execFileSync('tar', ['tvf', file, '--full-time'], {
    env: { ...process.env, TZ: 'UTC' },
  }).toString();
  const listing = new Map<string, string>();
  for (const line of out.trim().split('\n')) {
    const m = /^\S+ \S+\s+\d+ (\S+ \S+) +(.*)$/.exec(line);
    assert.ok(m, line);
    listing.set(m[2]!, m[1]!);
  }
  return listing;
}

const MTIMES: Record<string, number> = {
  'y2100-01-01': Date.UTC(2100, 0, 1) / 1000,
  'y2040-06-01': Date.UTC(2040, 5, 1) / 1000,
  'y1960-01-01': Date.UTC(1960, 0, 1) / 1000,
  'y2300-01-01': Date.UTC(2300, 0, 1) / 1000,
};

test('mtimes before 1970 and after 2038 survive backup and restore, and GNU tar reads them', async () => {
  const src = join(srv.root, 'mtimes');
  mkdirSync(src);
  for (const [name, t] of Object.entries(MTIMES)) {
    writeFileSync(join(src, name), name);
    // A Date: Node's utimes takes a negative number of seconds as "now".
    utimesSync(join(src, name), new Date(t * 1000), new Date(t * 1000));
  }
  await backup(src, 'mtimes', 1_700_000_000);
  const { dst } = await restore('mtimes', 1_700_000_000, 'mtimes-restored');
  for (const [name, t] of Object.entries(MTIMES)) {
    assert.equal(lstatSync(join(dst, name)).mtimeMs, t * 1000, name);
    assert.equal(readFileSync(join(dst, name), 'utf8'), name);
  }
  const listing = gnuTarListing('mtimes', 1_700_000_000);
  for (const [name, t] of Object.entries(MTIMES)) {
    assert.equal(
      listing.get(name),
      new Date(t * 1000).toISOString().replace('T', ' ').replace('.000Z', ''),
      name,
    );
  }
});

test('with --subsecond-mtimes an mtime comes back to the microsecond; without, to the second as before', async () => {
  const src = join(srv.root, 'subsec');
  mkdirSync(src);
  writeFileSync(join(src, 'f'), 'x');
  utimesSync(join(src, 'f'), 1_700_000_000.123456, 1_700_000_000.123456);
  const wanted = lstatSync(join(src, 'f'), { bigint: true }).mtimeNs;
  await backup(src, 'subsec', 1_700_000_000, ['--subsecond-mtimes']);
  await backup(src, 'subsec', 1_700_000_100);
  const exact = lstatSync(join((await restore('subsec', 1_700_000_000, 'subsec-ns')).dst, 'f'), {
    bigint: true,
  });
  const diff = exact.mtimeNs - wanted;
  assert.ok(diff > -1000n && diff < 1000n, `restored ${exact.mtimeNs}, wanted ${wanted}`);
  const whole = lstatSync(join((await restore('subsec', 1_700_000_100, 'subsec-s')).dst, 'f'));
  assert.equal(whole.mtimeMs, 1_700_000_000_000);
  assert.equal(gnuTarListing('subsec', 1_700_000_000).get('f'), '2023-11-14 22:13:20.123456');
});

test('FIFOs, devices, hard links and sparse files come back as they were; a socket is named on every run', async (t) => {
  const src = join(srv.root, 'special');
  mkdirSync(join(src, 'sub'), { recursive: true });
  execFileSync('mkfifo', ['-m', '640', join(src, 'pipe')]);
  writeFileSync(join(src, 'a'), 'linked content\n');
  linkSync(join(src, 'a'), join(src, 'sub', 'b'));
  const SPARSE = 8 * 1024 * 1024;
  const fd = openSync(join(src, 'sparse'), 'w');
  writeSync(fd, Buffer.from('start'), 0, 5, 0);
  writeSync(fd, Buffer.from('middle'), 0, 6, 4 * 1024 * 1024);
  closeSync(fd);
  execFileSync('truncate', ['-s', String(SPARSE), join(src, 'sparse')]);
  const asRoot = process.getuid?.() === 0;
  if (asRoot) execFileSync('mknod', ['-m', '620', join(src, 'null-dev'), 'c', '1', '3']);
  const server: Server = createServer();
  await new Promise<void>((r) => server.listen(join(src, 'sock'), r));
  t.after(() => server.close());
  await age();

  const first = await backup(src, 'special', 1_700_000_000);
  assert.match(first.stderr, /warning: skipping 'sock': sockets are not archived/);
  const second = await backup(src, 'special', 1_700_000_100);
  const summary = JSON.parse(second.stdout) as { archives: Array<{ 'index-reused'?: boolean }> };
  assert.equal(summary.archives[0]!['index-reused'], true, 'the second run reuses the whole archive');
  assert.match(second.stderr, /warning: skipping 'sock': sockets are not archived/);

  for (const time of [1_700_000_000, 1_700_000_100]) {
    const { dst } = await restore('special', time, `special-${time}`);
    const pipe = lstatSync(join(dst, 'pipe'));
    assert.ok(pipe.isFIFO());
    assert.equal(pipe.mode & 0o7777, 0o640);
    const a = lstatSync(join(dst, 'a'));
    const b = lstatSync(join(dst, 'sub', 'b'));
    assert.equal(a.ino, b.ino, 'a hard link pair comes back as one inode');
    assert.equal(a.nlink, 2);
    assert.equal(readFileSync(join(dst, 'sub', 'b'), 'utf8'), 'linked content\n');
    const sparse = lstatSync(join(dst, 'sparse'));
    assert.equal(sparse.size, SPARSE);
    assert.ok(sparse.blocks * 512 <= 64 * 1024, `sparse file allocated ${sparse.blocks * 512} bytes`);
    const content = readFileSync(join(dst, 'sparse'));
    assert.equal(content.subarray(0, 5).toString(), 'start');
    assert.equal(content.subarray(4 * 1024 * 1024, 4 * 1024 * 1024 + 6).toString(), 'middle');
    assert.ok(readFileSync(join(src, 'sparse')).equals(content));
    if (asRoot) {
      const dev = lstatSync(join(dst, 'null-dev'));
      assert.ok(dev.isCharacterDevice());
      assert.equal(dev.rdev, lstatSync(join(src, 'null-dev')).rdev);
      assert.equal(dev.mode & 0o7777, 0o620);
    }
    assert.equal(lstatSync(join(dst, 'sock'), { throwIfNoEntry: false }), undefined);
  }
  const listing = execFileSync('tar', ['tvf', '-'], {
    input: storedStream('special', 1_700_000_000),
  }).toString();
  assert.match(listing, /^prw-r-----.* pipe$/m);
  assert.match(listing, /^hrw-r--r--.* sub\/b link to a$/m);
  if (asRoot) assert.match(listing, /^crw--w----.* 1,3 .* null-dev$/m);
});
