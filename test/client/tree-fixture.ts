/**
 * Generated file trees for backup tests: random and text files, duplicates, many small files,
 * symlinks (relative, absolute, dangling), empty directories, odd modes and fixed mtimes; and a
 * comparison that checks content and metadata byte for byte.
 */
import { createHash, randomBytes } from 'node:crypto';
import {
  chmodSync,
  lstatSync,
  lutimesSync,
  mkdirSync,
  readFileSync,
  readdirSync,
  readlinkSync,
  symlinkSync,
  utimesSync,
  writeFileSync,
} from 'node:fs';
import { join } from 'node:path';

function prng(seed: string, n: number): Buffer {
  const out = Buffer.alloc(n);
  for (let off = 0, i = 0; off < n; i++)
    off += createHash('sha256').update(`${seed}:${i}`).digest().copy(out, off);
  return out;
}

/** Build a tree of about `scale` bytes under `root`. Deterministic except for `random` files. */
export function makeTree(root: string, opts: { scale?: number; seed?: string } = {}): void {
  const scale = opts.scale ?? 3 * 1024 * 1024;
  const seed = opts.seed ?? 'tree';
  const t = (s: number) => new Date(s * 1000);
  mkdirSync(join(root, 'docs/nested/deeper'), { recursive: true });
  mkdirSync(join(root, 'empty/also-empty'), { recursive: true });
  mkdirSync(join(root, 'bin'), { recursive: true });
  mkdirSync(join(root, 'small'), { recursive: true });
  writeFileSync(join(root, 'random.bin'), prng(`${seed}-random`, Math.floor(scale / 3)));
  const line = 'The quick brown fox jumps over the lazy dog. Stowage keeps backups.\n';
  writeFileSync(join(root, 'docs/text.txt'), line.repeat(Math.floor(scale / 3 / line.length)));
  const dup = prng(`${seed}-dup`, Math.floor(scale / 6));
  writeFileSync(join(root, 'docs/nested/dup-a.bin'), dup);
  writeFileSync(join(root, 'docs/nested/deeper/dup-b.bin'), dup);
  for (let i = 0; i < 200; i++)
    writeFileSync(
      join(root, 'small', `f${String(i).padStart(3, '0')}.txt`),
      `small file ${i}\n`.repeat(i % 7),
    );
  writeFileSync(join(root, 'empty-file'), '');
  writeFileSync(join(root, 'bin/tool'), '#!/bin/sh\necho hi\n');
  chmodSync(join(root, 'bin/tool'), 0o755);
  writeFileSync(join(root, 'secret'), 'private\n');
  chmodSync(join(root, 'secret'), 0o600);
  writeFileSync(join(root, 'setuid'), 'x');
  chmodSync(join(root, 'setuid'), 0o4750);
  writeFileSync(join(root, `${'long-name-'.repeat(12)}.txt`), 'long\n');
  mkdirSync(join(root, 'a'.repeat(90), 'b'.repeat(90)), { recursive: true });
  writeFileSync(join(root, 'a'.repeat(90), 'b'.repeat(90), 'c'.repeat(60)), 'deep path\n');
  symlinkSync('docs/text.txt', join(root, 'link-relative'));
  symlinkSync('/etc/hostname', join(root, 'link-absolute'));
  symlinkSync('does/not/exist', join(root, 'link-dangling'));
  symlinkSync('docs', join(root, 'link-dir'));
  writeFileSync(join(root, 'random-each-time.bin'), randomBytes(4096));
  chmodSync(join(root, 'empty/also-empty'), 0o700);
  // mtimes last, deepest first, so creating children does not change them afterwards
  lutimesSync(join(root, 'link-relative'), t(1_600_000_000), t(1_600_000_000));
  utimesSync(join(root, 'docs/text.txt'), t(1_500_000_000), t(1_500_000_001));
  utimesSync(join(root, 'empty/also-empty'), t(1_400_000_000), t(1_400_000_000));
  utimesSync(join(root, 'empty'), t(1_400_000_100), t(1_400_000_100));
  utimesSync(join(root, 'docs/nested'), t(1_300_000_000), t(1_300_000_000));
}

export interface TreeEntry {
  type: 'file' | 'dir' | 'symlink' | 'fifo';
  mode: number;
  mtime: number;
  sha?: string;
  size?: number;
  target?: string;
}

/** Everything a restore must reproduce, keyed by relative path. */
export function describeTree(root: string, opts: { rootMeta?: boolean } = {}): Map<string, TreeEntry> {
  const out = new Map<string, TreeEntry>();
  const visit = (abs: string, rel: string) => {
    const st = lstatSync(abs);
    const mtime = Math.floor(st.mtimeMs / 1000);
    if (st.isSymbolicLink()) {
      out.set(rel, { type: 'symlink', mode: 0, mtime, target: readlinkSync(abs) });
    } else if (st.isDirectory()) {
      if (rel !== '.' || opts.rootMeta) out.set(rel, { type: 'dir', mode: st.mode & 0o7777, mtime });
      for (const name of readdirSync(abs)) visit(join(abs, name), rel === '.' ? name : `${rel}/${name}`);
    } else if (st.isFIFO()) {
      // never read: opening a FIFO waits for a writer
      out.set(rel, { type: 'fifo', mode: st.mode & 0o7777, mtime });
    } else {
      const data = readFileSync(abs);
      out.set(rel, {
        type: 'file',
        mode: st.mode & 0o7777,
        mtime,
        size: data.length,
        sha: createHash('sha256').update(data).digest('hex'),
      });
    }
  };
  visit(root, '.');
  return out;
}
