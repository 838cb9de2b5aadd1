import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHmac, pbkdf2Sync, scryptSync } from 'node:crypto';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CorruptDataError, NotFoundError, StowageError } from '../../src/errors.js';
import { blobKind, decodeBlob, encodeBlob } from '../../src/datastore/data-blob.js';
import { acquireFileLock } from '../../src/sys/file-lock.js';
import {
  MANIFEST_BLOB_NAME,
  canonicalJson,
  decodeManifest,
  encodeManifest,
  loadManifest,
  manifestToJson,
  newManifest,
  signedManifestJson,
  storeManifest,
  updateManifest,
  type BackupManifest,
} from '../../src/datastore/manifest.js';

function sample(): BackupManifest {
  const m = newManifest('vm', '100', 1718000000);
  m.files.push({
    filename: 'drive-scsi0.img.fidx',
    'crypt-mode': 'none',
    size: 34359738368,
    csum: 'ab'.repeat(32),
  });
  m.files.push({ filename: 'qemu-server.conf.blob', 'crypt-mode': 'none', size: 412, csum: 'cd'.repeat(32) });
  m.unprotected.chunk_upload_stats = { count: 3, size: 100, compressed_size: 40, duplicates: 1 };
  return m;
}

function withTempDir(fn: (dir: string) => Promise<void> | void) {
  return async () => {
    const dir = mkdtempSync(join(tmpdir(), 'stowage-manifest-'));
    try {
      await fn(dir);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  };
}

test('canonical JSON reproduces the PBS manifest signature test vector', () => {
  // pbs-datastore/src/manifest.rs test_manifest_signature: scrypt key "test" (n=65536, r=8,
  // p=1, empty salt), id_key = pbkdf2(key, "_id_key", 10), HMAC-SHA256 over canonical JSON.
  const key = scryptSync('test', Buffer.alloc(0), 32, { N: 65536, r: 8, p: 1, maxmem: 128 * 1024 * 1024 });
  const idKey = pbkdf2Sync(key, '_id_key', 10, 32, 'sha256');
  const m = newManifest('host', 'elsa', 1593179765); // 2020-06-26T13:56:05Z
  m.files.push({ filename: 'test1.img.fidx', 'crypt-mode': 'encrypt', size: 200, csum: '01'.repeat(32) });
  m.files.push({ filename: 'abc.blob', 'crypt-mode': 'none', size: 200, csum: '02'.repeat(32) });
  m.unprotected.note = 'This is not protected by the signature.';
  const signature = createHmac('sha256', idKey).update(signedManifestJson(m)).digest('hex');
  assert.equal(signature, 'd7b446fb7db081662081d4b40fedd858a1d6307a5aff4ecff7d5bf4fd35679e9');
});

test('canonical JSON sorts keys by UTF-8 bytes, has no whitespace and refuses null', () => {
  assert.equal(
    canonicalJson({ b: [1, 'x', true], a: { d: 1, c: 'é' } }),
    '{"a":{"c":"é","d":1},"b":[1,"x",true]}',
  );
  // U+FF61 sorts before U+1F600 in UTF-8 bytes, after it in UTF-16 units
  assert.equal(canonicalJson({ '\u{1F600}': 1, '\uFF61': 2 }), '{"\uFF61":2,"\u{1F600}":1}');
  assert.throws(() => canonicalJson({ a: null }), CorruptDataError);
});

test('a manifest is stored as a compressed blob of pretty JSON with PBS keys and null signature', () => {
  const m = newManifest('host', 'web01', 1593179765);
  m.files.push({ filename: 'root.pxar.didx', 'crypt-mode': 'none', size: 5, csum: '0f'.repeat(32) });
  m.unprotected.notes = 'first';
  const blob = encodeManifest(m);
  assert.equal(blobKind(blob), 'compressed');
  const text = decodeBlob(blob).toString('utf8');
  assert.equal(
    text,
    [
      '{',
      '  "backup-id": "web01",',
      '  "backup-time": 1593179765,',
      '  "backup-type": "host",',
      '  "files": [',
      '    {',
      '      "crypt-mode": "none",',
      `      "csum": "${'0f'.repeat(32)}",`,
      '      "filename": "root.pxar.didx",',
      '      "size": 5',
      '    }',
      '  ],',
      '  "signature": null,',
      '  "unprotected": {',
      '    "notes": "first"',
      '  }',
      '}',
    ].join('\n'),
  );
  assert.equal(text, manifestToJson(m));
  assert.deepEqual(decodeManifest(blob), m);
});

test('manifests from PBS before 0.8 without crypt-mode or unprotected still load', () => {
  const old = {
    'backup-type': 'ct',
    'backup-id': '101',
    'backup-time': 1590000000,
    files: [{ filename: 'root.pxar.didx', size: 10, csum: '11'.repeat(32) }],
  };
  const m = decodeManifest(encodeBlob(Buffer.from(JSON.stringify(old))));
  assert.equal(m.files[0]?.['crypt-mode'], 'none');
  assert.deepEqual(m.unprotected, {});
  assert.equal(m.signature, null);
});

test('a damaged or malformed manifest is a CorruptDataError, never a partial manifest', () => {
  const good = encodeManifest(sample());
  const flipped = Buffer.from(good);
  flipped[flipped.length - 1]! ^= 0xff;
  assert.throws(() => decodeManifest(flipped), CorruptDataError);
  assert.throws(() => decodeManifest(encodeBlob(Buffer.from('{not json'))), CorruptDataError);
  const mutate = (f: (j: Record<string, unknown>) => void) => {
    const j = JSON.parse(manifestToJson(sample())) as Record<string, unknown>;
    f(j);
    return encodeBlob(Buffer.from(JSON.stringify(j)));
  };
  const files = (j: Record<string, unknown>) => j.files as Array<Record<string, unknown>>;
  for (const [label, f] of [
    ['traversal in a file name', (j) => (files(j)[0]!.filename = '../../etc/passwd')],
    ['hidden file name', (j) => (files(j)[0]!.filename = '.protected')],
    ['bad csum', (j) => (files(j)[0]!.csum = 'zz')],
    ['bad crypt-mode', (j) => (files(j)[0]!['crypt-mode'] = 'rot13')],
    ['negative size', (j) => (files(j)[0]!.size = -1)],
    ['bad backup-id', (j) => (j['backup-id'] = 'a/b')],
    ['bad backup-type', (j) => (j['backup-type'] = 'lxc')],
    ['files missing', (j) => delete j.files],
    ['unprotected not an object', (j) => (j.unprotected = 'x')],
  ] as Array<[string, (j: Record<string, unknown>) => void]>) {
    assert.throws(() => decodeManifest(mutate(f)), CorruptDataError, label);
  }
});

test(
  'storeManifest replaces the file atomically and loadManifest reads it back',
  withTempDir((dir) => {
    assert.throws(() => loadManifest(dir), NotFoundError);
    storeManifest(dir, sample(), { fsync: true });
    assert.deepEqual(loadManifest(dir), sample());
    const m2 = sample();
    m2.unprotected.notes = 'second';
    storeManifest(dir, m2);
    assert.equal(loadManifest(dir).unprotected.notes, 'second');
    assert.deepEqual(readdirSync(dir), [MANIFEST_BLOB_NAME]); // no temp files left behind
  }),
);

test(
  'concurrent manifest updates are serialised by the lock and none is lost',
  withTempDir(async (dir) => {
    storeManifest(dir, sample());
    const lockPath = join(dir, 'locks', 'x.index.json.lck');
    const lock = (timeoutMs: number) => acquireFileLock(lockPath, { timeoutMs });
    await Promise.all(
      Array.from({ length: 8 }, (_, i) =>
        updateManifest(
          dir,
          async (m) => {
            await new Promise((r) => setTimeout(r, 2)); // yield while holding the lock
            m.unprotected[`k${i}`] = i;
          },
          { lock },
        ),
      ),
    );
    const m = loadManifest(dir);
    for (let i = 0; i < 8; i++) assert.equal(m.unprotected[`k${i}`], i);
  }),
);

test(
  'a manifest update gives up with LOCK_TIMEOUT while another holder keeps the lock',
  withTempDir(async (dir) => {
    storeManifest(dir, sample());
    const lockPath = join(dir, 'm.lck');
    const held = await acquireFileLock(lockPath);
    try {
      await assert.rejects(
        updateManifest(dir, (m) => void (m.unprotected.notes = 'x'), {
          lock: (timeoutMs) => acquireFileLock(lockPath, { timeoutMs }),
          timeoutMs: 100,
        }),
        (err: unknown) => err instanceof StowageError && err.code === 'LOCK_TIMEOUT',
      );
    } finally {
      held.release();
    }
    assert.equal(loadManifest(dir).unprotected.notes, undefined);
  }),
);

test(
  'an update that would change the signed part is refused and leaves the file as it was',
  withTempDir(async (dir) => {
    storeManifest(dir, sample());
    const before = readFileSync(join(dir, MANIFEST_BLOB_NAME));
    await assert.rejects(
      updateManifest(dir, (m) => void (m.files[0]!.size = 1), {
        lock: (timeoutMs) => acquireFileLock(join(dir, 'm.lck'), { timeoutMs }),
      }),
      StowageError,
    );
    assert.deepEqual(readFileSync(join(dir, MANIFEST_BLOB_NAME)), before);
  }),
);
