import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  closeSync,
  fstatSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { once } from 'node:events';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import {
  DATASTORE_NAME_RE,
  DatastoreConfigFile,
  validateDatastoreName,
  type DatastoreConfig,
} from '../../src/config/datastore-config.js';

const REPO = fileURLToPath(new URL('../../', import.meta.url));
const MODULE = join(REPO, 'src/config/datastore-config.ts');

let root: string;
let count = 0;
before(() => {
  root = mkdtempSync(join(tmpdir(), 'stowage-dscfg-'));
});
after(() => rmSync(root, { recursive: true, force: true }));

/** A fresh config dir per test, with a datastore.cfg holding `content` when given. */
function configDir(content?: string): string {
  const dir = join(root, `etc${++count}`);
  mkdirSync(dir);
  if (content !== undefined) writeFileSync(join(dir, 'datastore.cfg'), content);
  return dir;
}

const sha256 = (data: string | Buffer) => createHash('sha256').update(data).digest('hex');

// As PBS 3.2 leaves it: properties Stowage does not type (notify, keep-*, backing-device) mixed in.
const PBS_FILE = [
  'datastore: store1',
  '\tcomment main pool',
  '\tgc-schedule daily',
  '\tkeep-daily 7',
  '\tnotify gc=never,verify=error',
  '\tpath /mnt/datastore/store1',
  '\tverify-new 1',
  '',
  'datastore: usb-disk',
  '\tbacking-device 8a4f3e1c-1f2e-4c1b-9d7a-2b1c0e5f6a7d',
  '\tmaintenance-mode read-only,message=disk swap',
  '\tpath /mnt/usb',
  '',
].join('\n');

/** Waits until a child prints a line starting with `word`. */
async function waitForLine(child: ChildProcess, word: string): Promise<void> {
  let out = '';
  for await (const chunk of child.stdout!) {
    out += String(chunk);
    if (out.split('\n').some((l) => l.startsWith(word))) return;
  }
  throw new Error(`child exited before printing '${word}': ${out}`);
}

/** A separate process holding an exclusive flock on `path` until killed. */
async function holdLockInChild(path: string): Promise<ChildProcess> {
  const script = `
    const fs = require('node:fs');
    const fsExt = require('fs-ext');
    const fd = fs.openSync(${JSON.stringify(path)}, 'a');
    fsExt.flockSync(fd, 'ex');
    process.stdout.write('locked\\n');
    setInterval(() => {}, 1000);
  `;
  const child = spawn(process.execPath, ['-e', script], { cwd: REPO, stdio: ['ignore', 'pipe', 'inherit'] });
  await waitForLine(child, 'locked');
  return child;
}

async function kill(child: ChildProcess): Promise<void> {
  if (child.exitCode === null && child.signalCode === null) {
    child.kill('SIGKILL');
    await once(child, 'exit');
  }
}

test('a missing datastore.cfg reads as no datastores with the digest of empty content', () => {
  const file = new DatastoreConfigFile(configDir());
  const snap = file.read();
  assert.equal(snap.stores.size, 0);
  assert.equal(snap.raw, '');
  assert.equal(snap.digest, sha256(''));
  assert.equal(file.path, join(file.configDir, 'datastore.cfg'));
  assert.equal(file.lockPath, join(file.configDir, '.datastore.lck'));
});

test('created datastores are written in PBS format, read back equal, and updated in place', async () => {
  const dir = join(configDir(), 'not-yet'); // update creates the directory
  const file = new DatastoreConfigFile(dir);
  const created = await file.update((stores) => {
    stores.set('store1', { name: 'store1', path: '/mnt/s1', comment: 'first', 'verify-new': true });
    stores.set('b2_', { name: 'b2_', path: '/srv/b2', 'gc-schedule': 'sat 02:00' });
  });
  const expected =
    'datastore: store1\n\tpath /mnt/s1\n\tcomment first\n\tverify-new true\n\n' +
    'datastore: b2_\n\tpath /srv/b2\n\tgc-schedule sat 02:00\n';
  const onDisk = readFileSync(file.path, 'utf8');
  assert.equal(onDisk, expected);
  assert.equal(created.raw, expected);
  assert.equal(created.digest, sha256(onDisk));
  assert.equal((statSync(file.path).mode & 0o777).toString(8), '640');

  const reread = new DatastoreConfigFile(dir).read();
  assert.deepEqual(reread, created);
  assert.deepEqual([...reread.stores.keys()], ['store1', 'b2_']);
  assert.deepEqual(reread.stores.get('store1'), {
    name: 'store1',
    path: '/mnt/s1',
    comment: 'first',
    'verify-new': true,
  });

  const updated = await file.update(
    (stores) => {
      const s1 = stores.get('store1')!;
      s1['maintenance-mode'] = 'offline,message="disk swap"';
      delete s1.comment;
      s1['verify-new'] = false;
    },
    { digest: created.digest },
  );
  assert.equal(
    readFileSync(file.path, 'utf8'),
    'datastore: store1\n\tpath /mnt/s1\n\tverify-new false\n\tmaintenance-mode offline,message="disk swap"\n\n' +
      'datastore: b2_\n\tpath /srv/b2\n\tgc-schedule sat 02:00\n',
  );
  assert.equal(updated.stores.get('store1')!['maintenance-mode'], 'offline,message="disk swap"');
  assert.equal(updated.digest, file.read().digest);
  assert.deepEqual(
    readdirSync(dir).sort(),
    ['.datastore.lck', 'datastore.cfg'],
    'no temporary file is left beside the config',
  );
});

test('a rewrite replaces the file by rename, so a reader holding the old file still sees it whole', async () => {
  const file = new DatastoreConfigFile(configDir(PBS_FILE));
  const fd = openSync(file.path, 'r');
  try {
    await file.update((stores) => {
      stores.get('store1')!.comment = 'renamed';
    });
    assert.equal(readFileSync(fd, 'utf8'), PBS_FILE);
    assert.notEqual(fstatSync(fd).ino, statSync(file.path).ino);
  } finally {
    closeSync(fd);
  }
  assert.match(readFileSync(file.path, 'utf8'), /\tcomment renamed\n/);
});

test('an update that changes nothing leaves the file untouched', async () => {
  const dir = configDir('datastore: store1\n\tpath /mnt/s1\n');
  const file = new DatastoreConfigFile(dir);
  const before = statSync(file.path, { bigint: true });
  const snap = await file.update(() => {});
  const now = statSync(file.path, { bigint: true });
  assert.equal(now.ino, before.ino);
  assert.equal(now.mtimeNs, before.mtimeNs);
  assert.equal(snap.digest, sha256('datastore: store1\n\tpath /mnt/s1\n'));
});

test('unknown properties written by PBS survive a rewrite, in place, as a one-line diff', async () => {
  const dir = configDir(PBS_FILE);
  const file = new DatastoreConfigFile(dir);
  const snap = file.read();
  assert.deepEqual(snap.stores.get('store1')!.extra, [
    ['keep-daily', '7'],
    ['notify', 'gc=never,verify=error'],
  ]);
  assert.equal(snap.stores.get('store1')!['verify-new'], true);
  await file.update((stores) => {
    stores.get('usb-disk')!['maintenance-mode'] = 'offline';
  });
  assert.equal(
    readFileSync(file.path, 'utf8'),
    PBS_FILE.replace('verify-new 1', 'verify-new true').replace(
      'maintenance-mode read-only,message=disk swap',
      'maintenance-mode offline',
    ),
  );
});

test('dropping an entry from extra deletes that unknown property and nothing else', async () => {
  const file = new DatastoreConfigFile(configDir(PBS_FILE));
  await file.update((stores) => {
    const s1 = stores.get('store1')!;
    s1.extra = s1.extra!.filter(([k]) => k !== 'keep-daily');
  });
  const text = readFileSync(file.path, 'utf8');
  assert.doesNotMatch(text, /keep-daily/);
  assert.match(text, /\tnotify gc=never,verify=error\n/);
  assert.match(text, /\tbacking-device 8a4f3e1c/);
});

test('a stale digest is refused with PBS wording and the file stays byte for byte the same', async () => {
  const file = new DatastoreConfigFile(configDir(PBS_FILE));
  const seen = file.read();
  await file.update((stores) => {
    stores.get('store1')!.comment = 'changed by someone else';
  });
  const between = readFileSync(file.path);
  let called = false;
  await assert.rejects(
    file.update(
      (stores) => {
        called = true;
        stores.delete('store1');
      },
      { digest: seen.digest },
    ),
    {
      code: 'CONFIG_MODIFIED',
      status: 409,
      message: 'detected modified configuration - file changed by other user? Try again.',
    },
  );
  assert.equal(called, false);
  assert.deepEqual(readFileSync(file.path), between);
});

test('when mutate throws, its error reaches the caller and nothing is written', async () => {
  const file = new DatastoreConfigFile(configDir(PBS_FILE));
  await assert.rejects(
    file.update((stores) => {
      stores.delete('store1');
      stores.get('usb-disk')!.path = '/elsewhere';
      throw new RangeError('changed my mind');
    }),
    RangeError,
  );
  assert.equal(readFileSync(file.path, 'utf8'), PBS_FILE);
  // and the lock was released: the next update does not wait
  await file.update(() => {}, { lockTimeoutMs: 100 });
});

test('an invalid result is refused with a 400 naming the store and field, and nothing is written', async () => {
  const file = new DatastoreConfigFile(configDir(PBS_FILE));
  const cases: Array<[(stores: Map<string, DatastoreConfig>) => void, RegExp]> = [
    [(s) => void (s.get('store1')!.path = 'relative/dir'), /datastore 'store1': path must be absolute/],
    [(s) => void (s.get('store1')!.comment = 'two\nlines'), /'comment' must not contain control characters/],
    [(s) => void (s.get('store1')!.comment = ' padded'), /'comment' must not start or end with whitespace/],
    [(s) => void s.set('ab', { name: 'ab', path: '/x' }), /invalid datastore name 'ab': must be 3 to 32/],
    [(s) => void s.set('new1', { name: 'new2', path: '/x' }), /stored under the different name 'new1'/],
    [
      (s) => void (s.get('store1')!.extra = [['path', '/other']]),
      /datastore 'store1': property 'path' is given twice/,
    ],
    [
      (s) => void ((s.get('store1') as unknown as Record<string, unknown>)['gc_schedule'] = 'daily'),
      /datastore 'store1': unknown property 'gc_schedule'/,
    ],
    [
      (s) => void ((s.get('store1') as unknown as Record<string, unknown>)['verify-new'] = 'yes'),
      /'verify-new' must be a boolean/,
    ],
  ];
  for (const [mutate, message] of cases) {
    await assert.rejects(file.update(mutate), { code: 'BAD_REQUEST', status: 400, message });
    assert.equal(readFileSync(file.path, 'utf8'), PBS_FILE);
  }
});

test('an async mutate is refused rather than having its changes lost', async () => {
  const file = new DatastoreConfigFile(configDir(PBS_FILE));
  await assert.rejects(
    file.update((async (stores: Map<string, DatastoreConfig>) => {
      stores.clear();
    }) as unknown as (stores: Map<string, DatastoreConfig>) => void),
    /mutate must be synchronous/,
  );
  assert.equal(readFileSync(file.path, 'utf8'), PBS_FILE);
});

test('the lock times out with LockTimeoutError while another process holds it, and frees when it dies', async () => {
  const file = new DatastoreConfigFile(configDir(PBS_FILE));
  const holder = await holdLockInChild(file.lockPath);
  try {
    const started = Date.now();
    await assert.rejects(file.lock(200), {
      code: 'LOCK_TIMEOUT',
      message: `Unable to acquire lock "${file.lockPath}" - got timeout after 0.2s`,
    });
    assert.ok(Date.now() - started >= 190, 'waited for the timeout');
    await assert.rejects(
      file.update(
        (stores) => {
          stores.clear();
        },
        { lockTimeoutMs: 150 },
      ),
      { code: 'LOCK_TIMEOUT' },
    );
    assert.equal(readFileSync(file.path, 'utf8'), PBS_FILE);
  } finally {
    await kill(holder);
  }
  const lock = await file.lock(1000); // the kernel dropped the dead holder's flock
  lock.release();
});

test('an update under a lock the caller already holds does not wait for itself', async () => {
  const file = new DatastoreConfigFile(configDir(PBS_FILE));
  const lock = await file.lock();
  try {
    await assert.rejects(
      file.update(() => {}, { lockTimeoutMs: 100 }),
      { code: 'LOCK_TIMEOUT' },
    );
    const snap = await file.update(
      (stores) => {
        stores.delete('usb-disk');
      },
      { lockHeld: true },
    );
    assert.deepEqual([...snap.stores.keys()], ['store1']);
  } finally {
    lock.release();
  }
});

test('readCached returns the same snapshot while the file is unchanged', () => {
  const file = new DatastoreConfigFile(configDir(PBS_FILE), { racyWindowMs: 0 });
  const first = file.readCached();
  assert.equal(file.readCached(), first);
  assert.deepEqual(first, file.read());
});

test('readCached sees a same-size rewrite by another process at once', async () => {
  const dir = configDir('datastore: store1\n\tpath /mnt/aaaa\n');
  // racyWindowMs 0 trusts the stat comparison alone, which is what this test is about
  const file = new DatastoreConfigFile(dir, { racyWindowMs: 0 });
  assert.equal(file.readCached().stores.get('store1')!.path, '/mnt/aaaa');
  const script = `
    import { DatastoreConfigFile } from ${JSON.stringify(MODULE)};
    await new DatastoreConfigFile(${JSON.stringify(dir)}).update((stores) => {
      stores.get('store1').path = '/mnt/bbbb';
    });
  `;
  await promisify(execFile)(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], {
    cwd: REPO,
  });
  const seen = file.readCached();
  assert.equal(seen.stores.get('store1')!.path, '/mnt/bbbb');
  assert.equal(seen.digest, sha256('datastore: store1\n\tpath /mnt/bbbb\n'));
});

test('readCached re-reads a freshly written file until its timestamps are safely in the past', () => {
  // the default window guards against coarse timestamps: a rewrite in the same clock tick with the
  // same size would otherwise be invisible
  const dir = configDir('datastore: store1\n\tpath /mnt/aaaa\n');
  const file = new DatastoreConfigFile(dir);
  const first = file.readCached();
  assert.notEqual(file.readCached(), first, 'a file written just now is not trusted from the cache');
  writeFileSync(file.path, 'datastore: store1\n\tpath /mnt/bbbb\n');
  assert.equal(file.readCached().stores.get('store1')!.path, '/mnt/bbbb');
});

test('readCached notices a file appearing and disappearing', () => {
  const dir = configDir();
  const file = new DatastoreConfigFile(dir, { racyWindowMs: 0 });
  assert.equal(file.readCached().stores.size, 0);
  writeFileSync(file.path, PBS_FILE);
  assert.equal(file.readCached().stores.size, 2);
  rmSync(file.path);
  assert.equal(file.readCached().stores.size, 0);
  assert.equal(file.readCached().digest, sha256(''));
});

test('snapshots are frozen so a caller cannot corrupt the cache by accident', () => {
  const file = new DatastoreConfigFile(configDir(PBS_FILE));
  const s1 = file.readCached().stores.get('store1')!;
  assert.throws(() => {
    s1.path = '/x';
  }, TypeError);
  assert.throws(() => {
    s1.extra!.push(['a', 'b']);
  }, TypeError);
});

test('a corrupt file is a BadConfigError naming the file and line, never an empty config', async () => {
  const cases: Array<[string, RegExp]> = [
    ['datastore: store1\n\tpath /a\n\ngarbage here\n', /datastore\.cfg line 4: cannot parse 'garbage here'/],
    ['datastore: store1\n\tpath /a\n\ndatastore: store1\n\tpath /b\n', /line 4: duplicate section/],
    [
      'datastore: store1\n\tpath /a\n\nremote: store2\n\tpath /b\n',
      /line 4: unexpected section type 'remote'/,
    ],
    [
      'datastore: store1\n\tcomment x\n\tpath relative\n',
      /line 3: path of datastore 'store1' is not absolute/,
    ],
    ['datastore: store1\n\tcomment x\n', /line 1: datastore 'store1' has no path/],
    ['datastore: store1\n\tpath /a\n\tverify-new maybe\n', /line 3: 'verify-new' must be true or false/],
    ['datastore: x\n\tpath /a\n', /line 1: invalid datastore name 'x'/],
    ['datastore: store1\n\tpath /a\n\tpath /b\n', /line 3: duplicate property 'path'/],
    [
      'datastore: store1\n\tpath /a\n\tlow-space-hold 5%\n',
      /line 3: 'low-space-hold' must be an integer percent from 0 to 100, not '5%'/,
    ],
    [
      'datastore: store1\n\tpath /a\n\tlow-space-hold 12\n',
      /'low-space-release' \(10\) must be above 'low-space-hold' \(12\)/,
    ],
  ];
  for (const [content, message] of cases) {
    const file = new DatastoreConfigFile(configDir(content));
    const expected = {
      code: 'BAD_CONFIG',
      message: new RegExp(`^${file.path.replace(/\./g, '\\.')} line \\d+: `),
    };
    assert.throws(() => file.read(), expected, content);
    assert.throws(() => file.read(), { message }, content);
    assert.throws(() => file.readCached(), { code: 'BAD_CONFIG', message }, content);
    await assert.rejects(
      file.update(() => {}),
      { code: 'BAD_CONFIG', message },
    );
    assert.equal(readFileSync(file.path, 'utf8'), content, 'a corrupt file is never overwritten');
  }
});

test('booleans are read in every spelling PBS accepts and written as true/false', async () => {
  for (const [word, value] of [
    ['1', true],
    ['true', true],
    ['Yes', true],
    ['on', true],
    ['0', false],
    ['FALSE', false],
    ['no', false],
    ['off', false],
  ] as const) {
    const file = new DatastoreConfigFile(configDir(`datastore: store1\n\tpath /a\n\tverify-new ${word}\n`));
    assert.equal(file.read().stores.get('store1')!['verify-new'], value, word);
    await file.update((stores) => {
      stores.get('store1')!.comment = 'touched';
    });
    assert.match(readFileSync(file.path, 'utf8'), new RegExp(`\tverify-new ${String(value)}\n`));
  }
});

test('datastore names follow PBS safe-id rules of 3 to 32 characters', () => {
  for (const good of ['abc', 'store1', '_x_', '0.backup-2', 'a'.repeat(32), 'Store_1.b-2']) {
    assert.doesNotThrow(() => validateDatastoreName(good), good);
    assert.match(good, DATASTORE_NAME_RE);
  }
  const bad: Array<[string, RegExp]> = [
    ['ab', /must be 3 to 32 characters long/],
    ['a'.repeat(33), /must be 3 to 32 characters long/],
    ['-store', /must match/],
    ['.hidden', /must match/],
    ['with space', /must match/],
    ['a/b/c', /must match/],
    ['ümlaut', /must match/],
  ];
  for (const [name, why] of bad) {
    assert.throws(
      () => validateDatastoreName(name),
      (err: unknown) => {
        assert.equal((err as { code?: string }).code, 'BAD_REQUEST', name);
        assert.ok((err as Error).message.startsWith(`invalid datastore name '${name}': `), name);
        assert.match((err as Error).message, why, name);
        return true;
      },
    );
  }
});

test('the low-space thresholds are Stowage properties: read as numbers, written only when set, checked on write', async () => {
  const file = new DatastoreConfigFile(
    configDir('datastore: store1\n\tpath /a\n\tlow-space-hold 3\n\tlow-space-release 20\n'),
  );
  const cfg = file.read().stores.get('store1')!;
  assert.equal(cfg['low-space-hold'], 3);
  assert.equal(cfg['low-space-release'], 20);
  assert.equal(cfg.extra, undefined, 'typed, not kept as unknown properties');

  // the defaults are never written, so a datastore.cfg stays readable by PBS until one is set
  const plain = new DatastoreConfigFile(configDir());
  await plain.update((stores) => stores.set('store2', { name: 'store2', path: '/b' }));
  assert.doesNotMatch(readFileSync(plain.path, 'utf8'), /low-space/);

  const before = readFileSync(file.path, 'utf8');
  for (const bad of [
    { 'low-space-hold': 15 }, // above the release of 10 (default) or 20
    { 'low-space-release': 3 }, // equal to the hold
    { 'low-space-hold': 101 },
    { 'low-space-hold': 2.5 },
  ]) {
    await assert.rejects(
      file.update((stores) => {
        Object.assign(
          stores.get('store1')!,
          bad,
          bad['low-space-hold'] === 15 && { 'low-space-release': 12 },
        );
      }),
      { code: 'BAD_REQUEST', message: /^datastore 'store1': 'low-space-/ },
      JSON.stringify(bad),
    );
  }
  assert.equal(readFileSync(file.path, 'utf8'), before, 'a refused update writes nothing');

  // 0 disables the hold: any release goes
  await file.update((stores) => {
    Object.assign(stores.get('store1')!, { 'low-space-hold': 0, 'low-space-release': 0 });
  });
  assert.match(readFileSync(file.path, 'utf8'), /\tlow-space-hold 0\n\tlow-space-release 0\n/);
});
