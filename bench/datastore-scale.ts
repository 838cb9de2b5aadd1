/**
 * Datastore operations at scale (issue 12's benchmarks): listing every snapshot, garbage
 * collection and verify of every snapshot, on a datastore of `--chunks` chunks referenced by
 * `--snapshots` snapshots (fixed indexes, 100 groups).
 *
 * Each is printed next to a floor measured in the same run on the same files:
 * - listing: a bare walk (readdir of every group, stat of every snapshot's manifest);
 * - GC: a bare walk that reads every index, touches every chunk it names (utimes) and then
 *   lstats every file under .chunks — the same file-system work GC's two phases must do;
 * - verify: reading every chunk file and hashing it (SHA-256), without decoding.
 *
 *   node --import tsx bench/datastore-scale.ts [--chunks 100000] [--snapshots 10000]
 *
 * The issue's sizes are 1 000 000 chunks and 10 000 snapshots (`--chunks 1000000`: several
 * minutes just to write the files on a small machine, and about 1 GiB of inodes and blocks).
 */
import { createHash, randomBytes } from 'node:crypto';
import {
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  utimesSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DatastoreConfigFile } from '../src/config/datastore-config.js';
import type { StowagePaths } from '../src/config/paths.js';
import { BackupGroup, BackupNamespace } from '../src/datastore/backup-info.js';
import { chunkFilePath } from '../src/datastore/chunk-store.js';
import { encodeBlob } from '../src/datastore/data-blob.js';
import { sha256 } from '../src/datastore/digest.js';
import { FixedIndexReader, FixedIndexWriter } from '../src/datastore/fixed-index.js';
import { newManifest, storeManifest } from '../src/datastore/manifest.js';
import { createVerifyCache } from '../src/datastore/verify.js';
import { openDatastoreAccess } from '../src/maintenance/open-datastore-access.js';
import { FilesystemChunkBackend } from '../src/datastore/chunk-store.js';

const args = process.argv.slice(2);
const arg = (name: string, def: string) => {
  const i = args.indexOf(`--${name}`);
  return i === -1 ? def : args[i + 1]!;
};
const CHUNKS = Number(arg('chunks', '100000'));
const SNAPSHOTS = Number(arg('snapshots', '10000'));
const GROUPS = 100;
const CHUNK_SIZE = 4096;
const STORE = 'scale';
const INDEX = 'drive-scsi0.img.fidx';

const seconds = (t0: bigint) => Number(process.hrtime.bigint() - t0) / 1e9;
function timed<T>(f: () => T): [T, number] {
  const t0 = process.hrtime.bigint();
  const r = f();
  return [r, seconds(t0)];
}
async function timedAsync<T>(f: () => Promise<T>): Promise<[T, number]> {
  const t0 = process.hrtime.bigint();
  const r = await f();
  return [r, seconds(t0)];
}

/** The datastore: CHUNKS compressible 4 KiB chunks, each snapshot naming its share of them. */
async function build(store: string): Promise<Buffer[]> {
  (await FilesystemChunkBackend.create(store)).closeSync();
  const digests: Buffer[] = [];
  const seed = randomBytes(16);
  for (let i = 0; i < CHUNKS; i++) {
    const data = Buffer.alloc(CHUNK_SIZE);
    seed.copy(data);
    data.writeUInt32LE(i, 16);
    const digest = sha256(data);
    writeFileSync(chunkFilePath(store, digest), encodeBlob(data, { compress: true }));
    digests.push(digest);
  }
  const per = Math.max(1, Math.floor(CHUNKS / SNAPSHOTS));
  const root = BackupNamespace.root();
  for (let s = 0; s < SNAPSHOTS; s++) {
    const group = new BackupGroup(root, 'vm', String(100 + (s % GROUPS)));
    const dir = group.snapshot(1_700_000_000 + s);
    const path = join(store, 'vm', group.id, dirName(dir.time));
    mkdirSync(path, { recursive: true });
    if (s < GROUPS) writeFileSync(join(store, 'vm', group.id, 'owner'), 'root@pam\n');
    const mine = digests.slice((s * per) % CHUNKS, ((s * per) % CHUNKS) + per);
    const w = FixedIndexWriter.create(join(path, INDEX), {
      size: CHUNK_SIZE * mine.length,
      chunkSize: CHUNK_SIZE,
    });
    mine.forEach((d, n) => w.addChunk(n * CHUNK_SIZE, CHUNK_SIZE, d));
    const f = w.close();
    const manifest = newManifest('vm', group.id, dir.time);
    manifest.files.push({
      filename: INDEX,
      'crypt-mode': 'none',
      size: f.size,
      csum: f.csum.toString('hex'),
    });
    storeManifest(path, manifest);
  }
  return digests;
}

function dirName(time: number): string {
  return new Date(time * 1000).toISOString().replace(/\.\d{3}Z$/, 'Z');
}

function* snapshotDirs(store: string): Generator<string> {
  for (const id of readdirSync(join(store, 'vm')))
    for (const snap of readdirSync(join(store, 'vm', id)))
      if (/^\d{4}-/.test(snap)) yield join(store, 'vm', id, snap);
}

function bareList(store: string): number {
  let n = 0;
  for (const dir of snapshotDirs(store)) {
    statSync(join(dir, 'index.json.blob'));
    n++;
  }
  return n;
}

function bareGcWalk(store: string): number {
  const now = Date.now() / 1000;
  for (const dir of snapshotDirs(store)) {
    const idx = FixedIndexReader.open(join(dir, INDEX));
    for (let i = 0; i < idx.count; i++) utimesSync(chunkFilePath(store, idx.digest(i)), now, now);
  }
  let files = 0;
  const chunks = join(store, '.chunks');
  for (const sub of readdirSync(chunks)) {
    for (const name of readdirSync(join(chunks, sub))) {
      lstatSync(join(chunks, sub, name));
      files++;
    }
  }
  return files;
}

function bareReadAll(store: string, digests: Buffer[]): number {
  let bytes = 0;
  for (const d of digests) {
    const b = readFileSync(chunkFilePath(store, d));
    createHash('sha256').update(b).digest();
    bytes += b.length;
  }
  return bytes;
}

async function main(): Promise<void> {
  const root = mkdtempSync(join(tmpdir(), 'stowage-bench-scale-'));
  const paths: StowagePaths = { configDir: join(root, 'etc'), dataDir: root, runDir: join(root, 'run') };
  const store = join(root, 'store');
  try {
    const [digests, buildS] = await timedAsync(() => build(store));
    await new DatastoreConfigFile(paths.configDir).update(
      (s) => void s.set(STORE, { name: STORE, path: store }),
    );
    console.log(
      `datastore: ${CHUNKS} chunks, ${SNAPSHOTS} snapshots in ${GROUPS} groups (built in ${buildS.toFixed(1)} s)`,
    );
    const access = openDatastoreAccess(paths);
    try {
      const rows: Array<[string, number, number, string]> = [];

      // listing
      const [bareCount, bareListS] = timed(() => bareList(store));
      const read = await access.lookupDatastore(STORE, 'read', { kind: 'bench' });
      const [listed, listS] = timed(() => {
        let n = 0;
        for (const g of read.datastore.listGroups()) n += read.datastore.listSnapshots(g).length;
        return n;
      });
      if (listed !== SNAPSHOTS || bareCount !== SNAPSHOTS)
        throw new Error(`listed ${listed}/${bareCount} snapshots`);
      rows.push(['list all snapshots', listS, bareListS, `${SNAPSHOTS} snapshots`]);

      // verify (read mode, one cache for the run as a verify job shares it)
      const [bytes, bareReadS] = timed(() => bareReadAll(store, digests));
      const [, verifyS] = await timedAsync(async () => {
        const cache = createVerifyCache();
        for (const g of read.datastore.listGroups())
          for (const s of read.datastore.listSnapshots(g)) {
            const r = await read.datastore.verifySnapshot(s.dir, { mode: 'read', cache });
            if (!r.ok) throw new Error(`verify failed: ${r.errors.join('; ')}`);
          }
      });
      rows.push([
        'verify every snapshot',
        verifyS,
        bareReadS,
        `${(bytes / 1e6).toFixed(0)} MB of chunk files`,
      ]);
      await read.release();

      // GC
      const [files, bareGcS] = timed(() => bareGcWalk(store));
      const write = await access.lookupDatastore(STORE, 'ingest', { kind: 'bench' });
      const [status, gcS] = await timedAsync(() => write.datastore.garbageCollection());
      await write.release();
      if (status['disk-chunks'] !== CHUNKS)
        throw new Error(`GC counted ${status['disk-chunks']} of ${CHUNKS} chunks`);
      rows.push(['garbage collection', gcS, bareGcS, `${files} chunk files`]);

      console.log('| operation | Stowage | floor (same files, same run) | ratio Stowage/floor | size |');
      console.log('|---|---|---|---|---|');
      for (const [what, s, floor, size] of rows)
        console.log(
          `| ${what} | ${s.toFixed(2)} s | ${floor.toFixed(2)} s | ${(s / floor).toFixed(2)}x | ${size} |`,
        );
    } finally {
      access.close();
    }
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
}

await main();
