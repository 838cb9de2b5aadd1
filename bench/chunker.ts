/**
 * Chunker throughput: `node --import tsx bench/chunker.ts [MiB]`. Prints MB/s of the buzhash
 * scanner alone (4 MiB average, as PBS) on random and on text-like data.
 */
import { randomBytes } from 'node:crypto';
import { Chunker } from '../src/client/chunker.js';

const mib = Number(process.argv[2] ?? 64);
const size = mib * 1024 * 1024;

function run(name: string, data: Buffer): void {
  const c = new Chunker();
  const piece = 1024 * 1024;
  const t0 = process.hrtime.bigint();
  let cuts = 0;
  for (let off = 0; off < data.length; off += piece) {
    const p = data.subarray(off, off + piece);
    let from = 0;
    for (;;) {
      const cut = c.scan(p, from);
      if (cut < 0) break;
      cuts++;
      from = cut;
    }
  }
  const secs = Number(process.hrtime.bigint() - t0) / 1e9;
  console.log(`${name}: ${(data.length / 1e6 / secs).toFixed(0)} MB/s, ${cuts} cuts in ${mib} MiB`);
}

const random = randomBytes(size);
const words = 'the quick brown fox jumps over the lazy dog stowage backup chunk '.split(' ');
const text = Buffer.alloc(size);
for (let off = 0; off < size;) off += text.write(words[(off * 7919) % words.length]! + ' ', off);
run('random', random);
run('text', text);
run('random (warm)', random);
