import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { BackupDir, BackupGroup, BackupNamespace, snapshotPath } from '../../src/datastore/backup-info.js';
import { FilesystemChunkBackend, chunkFilePath } from '../../src/datastore/chunk-store.js';
import { encodeBlob } from '../../src/datastore/data-blob.js';
import { DynamicIndexWriter } from '../../src/datastore/dynamic-index.js';
import { FixedIndexWriter } from '../../src/datastore/fixed-index.js';
import { loadManifest, newManifest, storeManifest } from '../../src/datastore/manifest.js';
import { createVerifyCache, verifySnapshot, type VerifyStore } from '../../src/datastore/verify.js';
import { testDatastoreLocks } from '../helpers/test-datastore.js';
import { writeChunkFile } from '../helpers/chunk-files.js';

const sha = (b: Uint8Array) => createHash('sha256').update(b).digest();
const UPID = 'UPID:pve:00001234:00005678:00000000:66000000:verify:store1:root@pam:';
const CHUNK = 1000;

interface Fixture {
  store: VerifyStore;
  base: string;
  /** Write a finished snapshot at `time` whose image is `payloads` (fixed) + a didx + a blob. */
  snapshot(time: number, payloads: string[]): { dir: BackupDir; digests: Buffer[] };
}

function fixture(t: { after: (fn: () => void) => void }): Fixture {
  const root = mkdtempSync(join(tmpdir(), 'stowage-verify-'));
  const base = join(root, 'store');
  mkdirSync(join(base, '.chunks'), { recursive: true });
  writeFileSync(join(base, '.lock'), '');
  const chunks = FilesystemChunkBackend.open(base);
  // The locks (snapshot and manifest) live outside the datastore, under the run dir, as in production.
  const store: VerifyStore = {
    basePath: base,
    chunks,
    locks: testDatastoreLocks(root, base),
  };
  t.after(() => {
    chunks.closeSync();
    rmSync(root, { recursive: true, force: true });
  });
  const group = new BackupGroup(BackupNamespace.root(), 'vm', '100');
  return {
    store,
    base,
    snapshot(time, payloads) {
      const dir = new BackupDir(group, time);
      const path = snapshotPath(store, dir);
      mkdirSync(path, { recursive: true });
      const digests = payloads.map((p) => {
        const data = Buffer.alloc(CHUNK, p);
        const digest = sha(data);
        writeChunkFile(base, digest, encodeBlob(data));
        return digest;
      });
      const fw = FixedIndexWriter.create(join(path, 'drive-scsi0.img.fidx'), {
        size: payloads.length * CHUNK,
        chunkSize: CHUNK,
      });
      digests.forEach((d, i) => fw.setDigest(i, d));
      const fidx = fw.close();
      const dw = DynamicIndexWriter.create(join(path, 'root.pxar.didx'));
      dw.addChunk(CHUNK, digests[0]!);
      const didx = dw.close();
      const conf = encodeBlob(Buffer.from('memory: 2048\n'));
      writeFileSync(join(path, 'qemu-server.conf.blob'), conf);
      const m = newManifest('vm', '100', time);
      m.files.push({
        filename: 'drive-scsi0.img.fidx',
        'crypt-mode': 'none',
        size: fidx.size,
        csum: fidx.csum.toString('hex'),
      });
      m.files.push({
        filename: 'root.pxar.didx',
        'crypt-mode': 'none',
        size: didx.size,
        csum: didx.csum.toString('hex'),
      });
      m.files.push({
        filename: 'qemu-server.conf.blob',
        'crypt-mode': 'none',
        size: conf.length,
        csum: sha(conf).toString('hex'),
      });
      storeManifest(path, m);
      return { dir, digests };
    },
  };
}

/** Every path under `root` with a hash of its content: what "nothing changed" means. */
function treeHash(root: string): string {
  const h = createHash('sha256');
  const walk = (dir: string) => {
    for (const e of readdirSync(dir, { withFileTypes: true }).sort((a, b) => a.name.localeCompare(b.name))) {
      const p = join(dir, e.name);
      h.update(`${relative(root, p)}\0${e.isDirectory() ? 'd' : 'f'}\0`);
      if (e.isDirectory()) walk(p);
      else h.update(sha(readFileSync(p)));
    }
  };
  walk(root);
  return h.digest('hex');
}

function corrupt(store: VerifyStore, digest: Buffer): void {
  const path = chunkFilePath(store.basePath, digest);
  const bytes = readFileSync(path);
  bytes[bytes.length - 1]! ^= 0x40;
  writeFileSync(path, bytes);
}

test('a healthy snapshot verifies and write mode records verify_state ok with the task upid', async (t) => {
  const f = fixture(t);
  const { dir } = f.snapshot(1_718_000_000, ['a', 'b', 'c']);
  const res = await verifySnapshot(f.store, dir, { mode: 'write', upid: UPID });
  assert.deepEqual(res, { ok: true, errors: [], renamed: [] });
  assert.deepEqual(loadManifest(snapshotPath(f.store, dir)).unprotected.verify_state, {
    upid: UPID,
    state: 'ok',
  });
});

test('in write mode a corrupt chunk is reported, renamed to .0.bad and the snapshot marked failed', async (t) => {
  const f = fixture(t);
  const { dir, digests } = f.snapshot(1_718_000_000, ['a', 'b', 'c']);
  const bad = digests[1]!;
  corrupt(f.store, bad);
  const lines: string[] = [];
  const res = await verifySnapshot(f.store, dir, { mode: 'write', upid: UPID, log: (l) => lines.push(l) });
  assert.equal(res.ok, false);
  assert.equal(res.errors.length, 1);
  assert.match(
    res.errors[0]!,
    new RegExp(`drive-scsi0.img.fidx: chunk ${bad.toString('hex')}: CRC mismatch`),
  );
  const chunkPath = chunkFilePath(f.base, bad);
  assert.deepEqual(res.renamed, [`${chunkPath}.0.bad`]);
  assert.equal(existsSync(chunkPath), false);
  assert.equal(existsSync(`${chunkPath}.0.bad`), true);
  assert.deepEqual(loadManifest(snapshotPath(f.store, dir)).unprotected.verify_state, {
    upid: UPID,
    state: 'failed',
  });
  assert.ok(lines.some((l) => l.includes('corrupted chunk renamed')));
});

test('in read mode a corrupt chunk is reported and every file stays byte-identical', async (t) => {
  const f = fixture(t);
  const { dir, digests } = f.snapshot(1_718_000_000, ['a', 'b', 'c']);
  corrupt(f.store, digests[2]!);
  const before = treeHash(f.base);
  const res = await verifySnapshot(f.store, dir, { mode: 'read' });
  assert.equal(res.ok, false);
  assert.match(res.errors.join('\n'), new RegExp(digests[2]!.toString('hex')));
  assert.deepEqual(res.renamed, []);
  assert.equal(treeHash(f.base), before);
  assert.equal(loadManifest(snapshotPath(f.store, dir)).unprotected.verify_state, undefined);
});

test('one run reads a shared chunk once: a corrupt one is reported for every snapshot but renamed once', async (t) => {
  const f = fixture(t);
  const s1 = f.snapshot(1_718_000_000, ['a', 'b']);
  const s2 = f.snapshot(1_718_000_100, ['a', 'b', 'x']);
  corrupt(f.store, s1.digests[1]!);
  const cache = createVerifyCache();
  const r1 = await verifySnapshot(f.store, s1.dir, { mode: 'write', upid: UPID, cache });
  const r2 = await verifySnapshot(f.store, s2.dir, { mode: 'write', upid: UPID, cache });
  assert.equal(r1.renamed.length, 1);
  assert.equal(r2.ok, false);
  assert.deepEqual(r2.renamed, []);
  assert.match(r2.errors.join('\n'), /was marked as corrupt/);
  const path = chunkFilePath(f.base, s1.digests[1]!);
  assert.equal(existsSync(`${path}.1.bad`), false);

  // And a chunk verified earlier in the run is not read again.
  const fresh = createVerifyCache();
  const s3 = f.snapshot(1_718_000_200, ['p', 'q']);
  assert.equal((await verifySnapshot(f.store, s3.dir, { mode: 'read', cache: fresh })).ok, true);
  corrupt(f.store, s3.digests[0]!);
  assert.equal((await verifySnapshot(f.store, s3.dir, { mode: 'read', cache: fresh })).ok, true);
  assert.equal((await verifySnapshot(f.store, s3.dir, { mode: 'read' })).ok, false);
});

test('index and blob mismatches against the manifest and missing chunks fail verification', async (t) => {
  const f = fixture(t);
  const { dir, digests } = f.snapshot(1_718_000_000, ['a', 'b']);
  const path = snapshotPath(f.store, dir);
  const m = loadManifest(path);
  m.files[0]!.csum = '00'.repeat(32);
  m.files[2]!.size += 1;
  storeManifest(path, m);
  rmSync(chunkFilePath(f.base, digests[0]!));
  const res = await verifySnapshot(f.store, dir, { mode: 'read' });
  assert.equal(res.ok, false);
  assert.deepEqual(
    res.errors.map((e) => e.replace(/[0-9a-f]{64}/, '<digest>')),
    [
      'drive-scsi0.img.fidx: wrong index checksum',
      'root.pxar.didx: chunk <digest> not found',
      `qemu-server.conf.blob: wrong size (${m.files[2]!.size - 1} != ${m.files[2]!.size})`,
    ],
  );
});

test('a snapshot locked by a running backup or delete is skipped, not failed', async (t) => {
  const f = fixture(t);
  const { dir } = f.snapshot(1_718_000_000, ['a']);
  const lock = await f.store.locks.service.tryAcquire({ kind: 'snapshot', store: 'store1', snapshot: dir });
  assert.ok(lock);
  t.after(() => lock.release());
  const res = await verifySnapshot(f.store, dir, { mode: 'write', upid: UPID });
  assert.equal(res.ok, true);
  assert.match(res.skipped ?? '', /unable to acquire lock/);
  assert.equal(loadManifest(snapshotPath(f.store, dir)).unprotected.verify_state, undefined);
});
