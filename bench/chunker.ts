/**
 * Chunker throughput: `node --import tsx bench/chunker.ts [MiB] [rounds]`. Prints MB/s of the
 * buzhash scanner alone (4 MiB average, as PBS) on random and on text-like data: the first
 * (cold, JIT warming up) round and the best of `rounds` (default 5), since the machine is shared
 * and a single round is noisy.
 */
import { randomBytes } from 'node:crypto';
import { Chunker } from '../src/client/chunker.js';

const mib = Number(process.argv[2] ?? 64);
const rounds = Number(process.argv[3] ?? 5);
const size = mib * 1024 * 1024;

/** One pass over `data` in 1 MiB pieces (as a tar stream arrives); MB/s. */
function pass(data: Buffer): { mbs: number; cuts: number } {
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
  return { mbs: data.length / 1e6 / secs, cuts };
}

const random = randomBytes(size);
const words = 'the quick brown fox jumps over the lazy dog stowage backup chunk '.split(' ');
const text = Buffer.alloc(size);
for (let off = 0; off < size;) off += text.write(words[(off * 7919) % words.length]! + ' ', off);
const inputs: Array<[string, Buffer]> = [
  ['random', random],
  ['text', text],
];
const results = new Map<string, number[]>();
const cuts = new Map<string, number>();
for (let r = 0; r < rounds; r++) {
  for (const [name, data] of inputs) {
    const res = pass(data);
    results.set(name, [...(results.get(name) ?? []), res.mbs]);
    cuts.set(name, res.cuts);
  }
}
for (const [name] of inputs) {
  const v = results.get(name)!;
  console.log(
    `${name}: first ${v[0]!.toFixed(0)} MB/s, best of ${rounds} ${Math.max(...v).toFixed(0)} MB/s, ${cuts.get(name)} cuts in ${mib} MiB`,
  );
}
