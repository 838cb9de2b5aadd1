/**
 * Small finished snapshots for API tests, written the way the backup protocol writes them (group
 * and snapshot locks, chunks, a fixed index, the manifest last) through an admitted `write`
 * operation. Works on a bare chunk store: the chunk subdirectories it needs are created on demand.
 */
import { join } from 'node:path';
import { BackupGroup, BackupNamespace } from '../../src/datastore/backup-info.js';
import { encodeBlob } from '../../src/datastore/data-blob.js';
import { sha256 } from '../../src/datastore/digest.js';
import { FixedIndexWriter } from '../../src/datastore/fixed-index.js';
import { newManifest, storeManifest } from '../../src/datastore/manifest.js';
import type { DatastoreAccess } from '../../src/maintenance/datastore-access.js';
import { writeChunkFile } from './chunk-files.js';
import { datastoreInternals } from './datastore-internals.js';

export interface FixtureSnapshot {
  type: 'vm' | 'ct' | 'host';
  id: string;
  /** Epoch seconds. */
  time: number;
  owner?: string;
  ns?: string;
  /** Distinguishes the chunk contents of snapshots. */
  label?: string;
  /** The manifest's `verify_state` (as a verify job records it); none by default. */
  verifyState?: 'ok' | 'failed';
  /** Listed as an encrypted backup: the index `encrypt`, the manifest signed (the chunks stay plain). */
  encrypted?: boolean;
}

/** Write finished snapshots (one 2-chunk fixed index each) into datastore `store`. */
export async function writeSnapshots(
  access: DatastoreAccess,
  store: string,
  snapshots: readonly FixtureSnapshot[],
): Promise<void> {
  const handle = await access.lookupDatastore(store, 'ingest', { kind: 'test-fixture' });
  try {
    const ds = datastoreInternals(handle.datastore);
    for (const s of snapshots) {
      const ns = BackupNamespace.parse(s.ns ?? '');
      for (let i = 1; i <= ns.depth; i++) {
        const partial = BackupNamespace.fromComponents(ns.components.slice(0, i));
        try {
          await ds.createNamespace(partial);
        } catch {
          // exists
        }
      }
      const group = new BackupGroup(ns, s.type, s.id);
      const { lock: groupLock } = await ds.createLockedBackupGroup(group, s.owner ?? 'root@pam');
      const dir = group.snapshot(s.time);
      const { path, lock } = await ds.createLockedBackupDir(dir);
      try {
        const chunkSize = 4096;
        const chunks = [0, 1].map((n) => Buffer.alloc(chunkSize, `${s.label ?? `${s.id}-${s.time}`}:${n};`));
        const fw = FixedIndexWriter.create(join(path, 'drive-scsi0.img.fidx'), {
          size: chunkSize * chunks.length,
          chunkSize,
        });
        chunks.forEach((c, n) => {
          const digest = sha256(c);
          writeChunkFile(ds.basePath, digest, encodeBlob(c));
          fw.addChunk(n * chunkSize, c.length, digest);
        });
        const f = fw.close();
        const manifest = newManifest(group.type, group.id, dir.time);
        manifest.files.push({
          filename: 'drive-scsi0.img.fidx',
          'crypt-mode': s.encrypted ? 'encrypt' : 'none',
          size: f.size,
          csum: f.csum.toString('hex'),
        });
        if (s.encrypted) manifest.signature = 'ab'.repeat(32);
        if (s.verifyState) manifest.unprotected.verify_state = { upid: 'UPID:fixture', state: s.verifyState };
        storeManifest(path, manifest);
      } finally {
        lock.release();
        groupLock.release();
      }
    }
  } finally {
    await handle.release();
  }
}
