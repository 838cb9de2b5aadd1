/**
 * pxar and catalog at scale: an archive of N members (default 1,000,000: half of them in one
 * directory, the rest spread over 1000 directories), written to a temporary file with its
 * catalog; then the time and the bytes read to find a member through the goodbye tables, the
 * time to find it in the catalog, and a full sequential decode for comparison. Peak RSS shows
 * that neither encoding nor lookups hold the archive in memory.
 *
 *   node --import tsx bench/pxar-scale.ts [--entries 1000000] [--lookups 1000]
 */
import { createWriteStream, mkdtempSync, rmSync, statSync, writeSync, openSync, closeSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PxarAccessor } from '../src/pxar/accessor.js';
import { CatalogReader, CatalogWriter } from '../src/pxar/catalog.js';
import { PxarDecoder } from '../src/pxar/decoder.js';
import { PxarEncoder } from '../src/pxar/encoder.js';
import { MODE, metadataOf } from '../src/pxar/format.js';
import { readAtFile, writableSink, type PxarReadAt } from '../src/pxar/io.js';

const args = process.argv.slice(2);
const arg = (name: string, def: string) => {
  const i = args.indexOf(`--${name}`);
  return i === -1 ? def : args[i + 1]!;
};
const ENTRIES = Number(arg('entries', '1000000'));
const LOOKUPS = Number(arg('lookups', '1000'));
const BIG_DIR = Math.floor(ENTRIES / 2);
const SMALL_DIRS = 1000;

const meta = (mode: number) =>
  metadataOf({ mode, flags: 0n, uid: 0, gid: 0, mtimeSecs: 1_700_000_000, mtimeNanos: 0 });
const fileName = (i: number) => `file-${String(i).padStart(8, '0')}`;
const dirName = (d: number) => `dir-${String(d).padStart(4, '0')}`;
const perDir = Math.ceil((ENTRIES - BIG_DIR) / SMALL_DIRS);

function mib(n: number): string {
  return `${(n / 1048576).toFixed(1)} MiB`;
}
let peakRss = 0;
const sampler = setInterval(() => (peakRss = Math.max(peakRss, process.memoryUsage().rss)), 50);

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'stowage-pxar-scale-'));
  try {
    const archivePath = join(dir, 'root.pxar');
    const catalogPath = join(dir, 'catalog.pcat1');
    const out = createWriteStream(archivePath);
    const catFd = openSync(catalogPath, 'w');
    const catalog = new CatalogWriter((b) => void writeSync(catFd, b));
    let t = performance.now();
    const enc = await PxarEncoder.create(writableSink(out), meta(MODE.IFDIR | 0o755));
    catalog.startDirectory('root.pxar.didx');
    const content = Buffer.from('x');
    await enc.createDirectory('big', meta(MODE.IFDIR | 0o755));
    catalog.startDirectory('big');
    for (let i = 0; i < BIG_DIR; i++) {
      await enc.addFile(meta(MODE.IFREG | 0o644), fileName(i), 1, content);
      catalog.addFile(fileName(i), 1, 1_700_000_000);
    }
    await enc.finishDirectory();
    catalog.endDirectory();
    for (let d = 0; d < SMALL_DIRS; d++) {
      await enc.createDirectory(dirName(d), meta(MODE.IFDIR | 0o755));
      catalog.startDirectory(dirName(d));
      for (let i = 0; i < perDir; i++) {
        await enc.addFile(meta(MODE.IFREG | 0o644), fileName(i), 1, content);
        catalog.addFile(fileName(i), 1, 1_700_000_000);
      }
      await enc.finishDirectory();
      catalog.endDirectory();
    }
    await enc.finish();
    catalog.endDirectory();
    catalog.finish();
    closeSync(catFd);
    await new Promise<void>((resolve, reject) =>
      out.end((err?: Error | null) => (err ? reject(err) : resolve())),
    );
    const encodeS = (performance.now() - t) / 1000;
    console.log(
      `encode: ${ENTRIES} members in ${encodeS.toFixed(1)} s; archive ${mib(statSync(archivePath).size)}, catalog ${mib(statSync(catalogPath).size)}; peak RSS ${mib(peakRss)}`,
    );

    const fh = await open(archivePath, 'r');
    const base = await readAtFile(fh);
    const stats = { reads: 0, bytes: 0 };
    const counted: PxarReadAt = {
      size: base.size,
      read: (o, l) => {
        stats.reads++;
        stats.bytes += l;
        return base.read(o, l);
      },
    };
    const acc = PxarAccessor.open(counted);
    t = performance.now();
    for (let k = 0; k < LOOKUPS; k++) {
      const i = (k * 7919) % BIG_DIR;
      if (!(await acc.lookup(`/big/${fileName(i)}`))) throw new Error(`missing ${fileName(i)}`);
    }
    const lookupMs = (performance.now() - t) / LOOKUPS;
    console.log(
      `goodbye lookup in a directory of ${BIG_DIR}: ${lookupMs.toFixed(3)} ms, ${(stats.reads / LOOKUPS).toFixed(1)} reads, ${(stats.bytes / LOOKUPS).toFixed(0)} bytes each`,
    );

    const catFh = await open(catalogPath, 'r');
    const cat = CatalogReader.open(await readAtFile(catFh));
    const catLookups = Math.min(LOOKUPS, 20);
    t = performance.now();
    for (let k = 0; k < catLookups; k++) {
      const d = (k * 37) % SMALL_DIRS;
      if (!(await cat.lookup(`/root.pxar.didx/${dirName(d)}/${fileName(k % perDir)}`)))
        throw new Error('catalog miss');
    }
    console.log(
      `catalog lookup in a directory of ${perDir}: ${((performance.now() - t) / catLookups).toFixed(2)} ms each`,
    );
    t = performance.now();
    await cat.lookup(`/root.pxar.didx/big/${fileName(BIG_DIR - 1)}`);
    console.log(
      `catalog lookup in the directory of ${BIG_DIR}: ${(performance.now() - t).toFixed(0)} ms (PBS reads the block whole, too)`,
    );
    await catFh.close();

    t = performance.now();
    let n = 0;
    for await (const _ of PxarDecoder.fromReadAt(base)) n++;
    console.log(
      `full sequential decode: ${n} entries in ${((performance.now() - t) / 1000).toFixed(1)} s; peak RSS ${mib(peakRss)}`,
    );
    await fh.close();
  } finally {
    clearInterval(sampler);
    rmSync(dir, { recursive: true, force: true });
  }
}

await main();
