/**
 * The nightly question, from the command line: a file was deleted from the source; `stowage-client
 * catalog find` finds it in last night's snapshot and `catalog ls` shows its directory, read from
 * the snapshot's catalog over a reader session, and `restore --pattern` brings it back alone.
 * Refusals are one line with a non-zero exit.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { lstatSync, mkdirSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { runClient, startE2eServer, type E2eServer } from './backup-helpers.js';

let srv: E2eServer;
let src: string;
const TIME = 1_700_000_000;
const SNAP = `host/nightly/2023-11-14T22:13:20Z`;

before(async () => {
  srv = await startE2eServer('stowage-e2e-catalog-cli-');
  src = join(srv.root, 'src');
  mkdirSync(join(src, 'home', 'ann', 'docs'), { recursive: true });
  mkdirSync(join(src, 'etc'));
  writeFileSync(join(src, 'etc', 'fstab'), 'proc /proc proc defaults 0 0\n');
  writeFileSync(join(src, 'home', 'ann', 'docs', 'thesis.tex'), '\\documentclass{book}\n'.repeat(100));
  writeFileSync(join(src, 'home', 'ann', 'docs', 'notes.txt'), 'remember\n');
  const res = await runClient(
    [
      'backup',
      `root.pxar:${src}`,
      'etc.tar:' + join(src, 'etc'),
      '--backup-id',
      'nightly',
      '--backup-time',
      String(TIME),
    ],
    srv.env,
  );
  assert.equal(res.code, 0, res.stderr);
});

after(async () => {
  await srv?.stop();
});

test('a file deleted from the source is found with catalog find and its directory listed with catalog ls', async () => {
  const mtime = Math.floor(lstatSync(join(src, 'home', 'ann', 'docs', 'thesis.tex')).mtimeMs / 1000);
  rmSync(join(src, 'home', 'ann', 'docs', 'thesis.tex'));

  const find = await runClient(
    ['catalog', 'find', 'host/nightly', '*.tex', '--output-format', 'json'],
    srv.env,
  );
  assert.equal(find.code, 0, find.stderr);
  assert.deepEqual(JSON.parse(find.stdout), [
    { path: '/root.pxar.didx/home/ann/docs/thesis.tex', type: 'f', size: 2100, mtime },
  ]);

  const text = await runClient(['catalog', 'find', SNAP, '**/docs/*'], srv.env);
  assert.equal(text.code, 0, text.stderr);
  const lines = text.stdout.trim().split('\n');
  assert.equal(lines.length, 2);
  assert.match(lines[0]!, /^f\s+.*\/root\.pxar\.didx\/home\/ann\/docs\/notes\.txt$/);
  assert.match(
    lines[1]!,
    /^f\s+[\d.]+ KiB\s+\d{4}-\d\d-\d\dT[\d:]+Z\s+\/root\.pxar\.didx\/home\/ann\/docs\/thesis\.tex$/,
  );

  const top = await runClient(['catalog', 'ls', SNAP, '--output-format', 'json'], srv.env);
  assert.deepEqual(
    JSON.parse(top.stdout),
    [{ name: 'root.pxar.didx', type: 'd' }],
    'the tar archive has no catalog',
  );
  const ls = await runClient(['catalog', 'ls', 'host/nightly', 'root.pxar/home/ann/docs'], srv.env);
  assert.equal(ls.code, 0, ls.stderr);
  assert.match(ls.stdout, /^f .* notes\.txt\nf .* thesis\.tex\n$/);
  const dirs = await runClient(['catalog', 'ls', 'host/nightly', '/root.pxar.didx'], srv.env);
  assert.match(dirs.stdout, /^d\s+-\s+-\s+etc\/\nd\s+-\s+-\s+home\/\n$/);

  // ... and restored alone, with its mtime, next to nothing else
  const target = join(srv.root, 'found');
  const restore = await runClient(
    ['restore', 'host/nightly', 'root.pxar', target, '--pattern', '/home/ann/docs/thesis.tex'],
    srv.env,
  );
  assert.equal(restore.code, 0, restore.stderr);
  const file = join(target, 'home', 'ann', 'docs', 'thesis.tex');
  assert.equal(readFileSync(file, 'utf8'), '\\documentclass{book}\n'.repeat(100));
  assert.equal(Math.floor(lstatSync(file).mtimeMs / 1000), mtime);
  assert.deepEqual(readdirSync(join(target, 'home', 'ann', 'docs')), ['thesis.tex']);
  assert.deepEqual(readdirSync(target), ['home']);
});

test('bad paths and snapshots are one-line errors with a non-zero exit', async () => {
  const missing = await runClient(['catalog', 'ls', 'host/nightly', 'root.pxar/nothing'], srv.env);
  assert.notEqual(missing.code, 0);
  assert.match(
    missing.stderr,
    /^error: no such file or directory in the catalog: '\/root\.pxar\.didx\/nothing'\n$/,
  );
  const file = await runClient(['catalog', 'ls', 'host/nightly', 'root.pxar/etc/fstab'], srv.env);
  assert.notEqual(file.code, 0);
  assert.match(file.stderr, /is not a directory/);
  const up = await runClient(['catalog', 'ls', 'host/nightly', 'root.pxar/../x'], srv.env);
  assert.notEqual(up.code, 0);
  assert.match(up.stderr, /'\.\.' is not allowed/);
  const noGroup = await runClient(['catalog', 'find', 'host/nobody', '*'], srv.env);
  assert.notEqual(noGroup.code, 0);
  assert.match(noGroup.stderr, /^error: .*\n$/);
});

test('a snapshot without pxar archives says it has no catalog', async () => {
  const res = await runClient(
    ['backup', 'etc.tar:' + join(src, 'etc'), '--backup-id', 'taronly', '--backup-time', String(TIME)],
    srv.env,
  );
  assert.equal(res.code, 0, res.stderr);
  const ls = await runClient(['catalog', 'ls', 'host/taronly'], srv.env);
  assert.notEqual(ls.code, 0);
  assert.match(ls.stderr, /no file catalog: it has no pxar archive \(archives: .*etc\.tar\.didx/);
});
