/**
 * GC's sweep racing a chunk re-insert in another process (the stat -> unlink window noted since
 * issue 2; a graceful restart runs two server processes): the insert touches the existing chunk
 * and relies on it, so the sweep must not remove it. The sweep's fault-injection hook runs the
 * other process exactly inside the window, between the sweep's decision and the removal.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, utimesSync, writeFileSync, existsSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { FilesystemChunkBackend, chunkFilePath } from '../../src/datastore/chunk-store.js';
import { checkChunkBlob } from '../../src/datastore/chunk-backend.js';
import { encodeBlob } from '../../src/datastore/data-blob.js';
import { sha256 } from '../../src/datastore/digest.js';
import { writeChunkFile } from '../helpers/chunk-files.js';
import { makeBareChunkStore } from '../helpers/test-datastore.js';

const INSERT = fileURLToPath(new URL('./fixtures/insert-chunk.ts', import.meta.url));
const DAY = 86_400_000;

test('a chunk re-inserted by another process while the sweep is about to remove it survives', async () => {
  const root = mkdtempSync(join(tmpdir(), 'stowage-fault-sweep-'));
  try {
    const store = join(root, 'store');
    makeBareChunkStore(store);
    const payload = Buffer.from('a chunk an old backup wrote and a new one writes again');
    const digest = sha256(payload);
    const blob = encodeBlob(payload);
    const path = writeChunkFile(store, digest, blob);
    // unused for two days: this sweep removes it unless something touches it
    const old = (Date.now() - 2 * DAY) / 1000;
    utimesSync(path, old, old);
    // a leftover of a write killed three days ago, which the sweep reclaims
    const leftover = `${path}.tmp_0123456789ab`;
    writeFileSync(leftover, blob.subarray(0, 10));
    utimesSync(leftover, old - DAY / 1000, old - DAY / 1000);
    const blobFile = join(root, 'blob');
    writeFileSync(blobFile, blob);

    let inserted: { duplicate: boolean } | undefined;
    const backend = FilesystemChunkBackend.open(store, {
      beforeSweepRemove: (name) => {
        assert.equal(name, digest.toString('hex'));
        const r = spawnSync(process.execPath, ['--import', 'tsx', INSERT, store, blobFile, name], {
          encoding: 'utf8',
        });
        assert.equal(r.status, 0, r.stderr);
        inserted = JSON.parse(r.stdout) as { duplicate: boolean };
      },
    });
    try {
      const now = Date.now();
      const stats = await backend.sweep({ minAtimeMs: now - DAY - 300_000, oldestWriterMs: now });
      // the other process relied on the stored copy (a dedup touch), so it must still be there
      assert.deepEqual(inserted, { duplicate: true, encodedSize: blob.length });
      assert.ok(existsSync(path), 'the sweep removed a chunk another process had just re-inserted');
      assert.equal(stats.removedChunks, 0);
      assert.equal(stats.diskChunks, 1);
      checkChunkBlob(digest, await backend.load(digest));
      // nothing but the chunk is left in its directory
      assert.deepEqual(readdirSync(dirname(path)), [digest.toString('hex')]);
    } finally {
      await backend.close();
    }
    assert.equal(chunkFilePath(store, digest), path);
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});
