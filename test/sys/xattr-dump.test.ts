import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ERR_XATTR_DUMP_INVALID } from '../../src/errors.js';
import {
  formatXattrDump,
  parseXattrDump,
  quoteXattrField,
  unquoteXattrField,
} from '../../src/sys/xattr-dump.js';
import { readTreeXattrs, restoreXattrs, TOOL_UNAVAILABLE } from '../../src/sys/xattr-tools.js';

const b = (s: string) => Buffer.from(s, 'latin1');

test("getfattr's dump is parsed with its escapes: a newline in a path, '=' and a backslash in a name, empty values", () => {
  const dump = b(
    '# file: a\\012b\nuser.a\\075b=0x00ff\n\n' +
      '# file: d\\134x\nuser.empty=0x\nsystem.posix_acl_access=0x02000000\n\n' +
      '# file: e=f\nuser.n\\134l=0x41\n\n',
  );
  assert.deepEqual(parseXattrDump(dump), [
    { path: b('a\nb'), attrs: [{ name: b('user.a=b'), value: Buffer.from([0, 255]) }] },
    {
      path: b('d\\x'),
      attrs: [
        { name: b('user.empty'), value: Buffer.alloc(0) },
        { name: b('system.posix_acl_access'), value: Buffer.from([2, 0, 0, 0]) },
      ],
    },
    { path: b('e=f'), attrs: [{ name: b('user.n\\l'), value: b('A') }] },
  ]);
});

test('bytes that are not UTF-8 pass through the dump unchanged', () => {
  const path = Buffer.from([0x66, 0xff, 0xfe, 0x0d]);
  const name = Buffer.concat([b('user.'), Buffer.from([0xc3, 0x28, 0x3d])]);
  const entries = [{ path, attrs: [{ name, value: Buffer.from([1, 2, 3]) }] }];
  assert.deepEqual(parseXattrDump(formatXattrDump(entries)), entries);
});

test('a backslash not followed by three octal digits stays a backslash (unquote.c)', () => {
  assert.deepEqual(unquoteXattrField(b('a\\9b\\01')), b('a\\9b\\01'));
  assert.deepEqual(quoteXattrField(b('x\\y'), []), b('x\\134y'));
});

test('output that is not a dump is refused with the line it stopped at', () => {
  assert.throws(
    () => parseXattrDump(b('user.a=0x00\n')),
    (e) => ERR_XATTR_DUMP_INVALID.is(e) && /line 1/.test(String(e)),
  );
  assert.throws(
    () => parseXattrDump(b('# file: a\nuser.a="text"\n')),
    (e) => ERR_XATTR_DUMP_INVALID.is(e) && /line 2/.test(String(e)),
  );
  assert.throws(
    () => parseXattrDump(b('# file: a\nnovalue\n')),
    (e) => ERR_XATTR_DUMP_INVALID.is(e),
  );
});

test('attributes written with setfattr --restore read back the same with getfattr, names and paths with odd bytes included', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'stowage-xattr-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const odd = b('new\nline\\=');
  mkdirSync(join(dir, 'sub'));
  writeFileSync(Buffer.concat([b(`${dir}/sub/`), odd]), 'x');
  writeFileSync(join(dir, '-dash'), 'x');
  const entries = [
    { path: b('.'), attrs: [{ name: b('user.root'), value: b('r') }] },
    { path: b('-dash'), attrs: [{ name: b('user.bin'), value: Buffer.from([0, 10, 13, 92, 255]) }] },
    { path: Buffer.concat([b('sub/'), odd]), attrs: [{ name: b('user.a=b\nc'), value: Buffer.alloc(0) }] },
  ];
  const complaints = await restoreXattrs(dir, formatXattrDump(entries));
  assert.deepEqual(complaints, []);
  const warnings: string[] = [];
  const read = await readTreeXattrs(dir, { recursive: ['.'], single: [] }, '^user\\.', (w) =>
    warnings.push(w),
  );
  assert.notEqual(read, TOOL_UNAVAILABLE);
  const map = read as Exclude<typeof read, typeof TOOL_UNAVAILABLE>;
  assert.deepEqual(
    [...map.entries()].sort(([x], [y]) => x.localeCompare(y)),
    [
      ['', entries[0]!.attrs],
      ['-dash', entries[1]!.attrs],
      [Buffer.concat([b('sub/'), odd]).toString('latin1'), entries[2]!.attrs],
    ],
  );
  assert.deepEqual(warnings, []);
});

test('one attribute setfattr cannot set is a complaint, the others are set', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'stowage-xattr-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  writeFileSync(join(dir, 'f'), 'x');
  const entries = [
    { path: b('missing'), attrs: [{ name: b('user.a'), value: b('1') }] },
    { path: b('f'), attrs: [{ name: b('user.b'), value: b('2') }] },
  ];
  const complaints = await restoreXattrs(dir, formatXattrDump(entries));
  assert.equal((complaints as string[]).length, 1);
  assert.match((complaints as string[])[0]!, /missing/);
  assert.equal(
    execFileSync('getfattr', ['--only-values', '-n', 'user.b', 'f'], { cwd: dir }).toString(),
    '2',
  );
});
