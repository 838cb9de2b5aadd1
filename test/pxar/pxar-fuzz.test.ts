/**
 * Corrupt archives: every truncation and random mutations (bit flips, byte sets, splices,
 * interesting integers in headers) must end in a CorruptDataError (or another declared
 * StowageError) or a clean decode, quickly; never a TypeError, a RangeError from a huge
 * allocation, or a hang. Random and stream decoders both.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Readable } from 'node:stream';
import { StowageError, CorruptDataError } from '../../src/errors.js';
import { PxarAccessor } from '../../src/pxar/accessor.js';
import { PxarDecoder } from '../../src/pxar/decoder.js';
import { PxarEncoder } from '../../src/pxar/encoder.js';
import { MODE } from '../../src/pxar/format.js';
import { bufferSink, readAtBuffer, sequentialFromReadAt } from '../../src/pxar/io.js';
import { Prng, fuzzSeconds, mutate } from '../fuzz/mutator.js';
import { richMetadata } from './tree.js';

async function sampleArchive(): Promise<Buffer> {
  const sink = bufferSink();
  const enc = await PxarEncoder.create(sink, richMetadata(MODE.IFDIR | 0o755));
  const file = await enc.addFile(richMetadata(MODE.IFREG | 0o644), 'a', 5, Buffer.from('hello'));
  await enc.createDirectory('d', richMetadata(MODE.IFDIR | 0o755));
  await enc.addFile(richMetadata(MODE.IFREG | 0o600), 'f', 0, Buffer.alloc(0));
  await enc.addSocket(richMetadata(MODE.IFSOCK | 0o755), 's');
  await enc.finishDirectory();
  await enc.addHardlink('h', 'a', file);
  await enc.addFifo(richMetadata(MODE.IFIFO | 0o644), 'p');
  await enc.addSymlink(richMetadata(MODE.IFLNK | 0o777), 'z', 'a');
  await enc.finish();
  return sink.buffer();
}

async function decodeFully(d: PxarDecoder): Promise<number> {
  let n = 0;
  for await (const e of d) {
    n++;
    if (e.kind === 'file' && e.payloadRef === undefined) for await (const _ of d.contents()) n++;
  }
  return n;
}

/** Lookups of every name of the sample, a listing of the root and a hardlink followed. */
async function goodbyeWalk(bytes: Buffer): Promise<number> {
  const acc = PxarAccessor.open(readAtBuffer(bytes));
  let n = 0;
  for (const p of ['/a', '/d', '/d/f', '/d/s', '/h', '/p', '/z', '/missing', '/d/missing']) {
    const e = await acc.lookup(p);
    if (e?.kind === 'hardlink') await acc.followHardlink(e);
    if (e?.kind === 'file') for await (const _ of acc.contents(e)) n++;
  }
  for await (const _ of acc.readDirectory(await acc.root())) n++;
  return n;
}

/** Decoding ends, by returning or with a StowageError, within 2 s. */
async function declaredOutcome(bytes: Buffer, viaStream: boolean): Promise<unknown> {
  const started = Date.now();
  try {
    if (viaStream)
      return await decodeFully(
        PxarDecoder.fromStream(Readable.from([bytes.subarray(0, 7), bytes.subarray(7)])),
      );
    // random access: the goodbye tables are read even where the sequential decode fails early
    const lookups = await goodbyeWalk(bytes).catch((err: unknown) => err);
    if (!(lookups instanceof StowageError) && lookups instanceof Error) throw lookups;
    return await decodeFully(PxarDecoder.fromReadAt(readAtBuffer(bytes)));
  } catch (err) {
    if (err instanceof StowageError) return err;
    throw err;
  } finally {
    assert.ok(Date.now() - started < 2_000, 'decode took over 2 s (hang)');
  }
}

test('every truncation of an archive is refused as corrupt, by both decoders', async () => {
  const archive = await sampleArchive();
  assert.ok((await declaredOutcome(archive, false)) === 9);
  // every length through the first entries' items, then every 3rd; the stream decoder shares
  // the item logic, so every 5th length of it keeps the test quick
  for (let len = 0; len < archive.length; len += len < 512 ? 1 : 4) {
    for (const viaStream of len % 5 === 0 ? [false, true] : [false]) {
      const out = await declaredOutcome(archive.subarray(0, len), viaStream);
      assert.ok(out instanceof CorruptDataError, `truncated to ${len}: ${String(out)}`);
    }
  }
});

test('lookups in every truncation of an archive fail as corrupt', async () => {
  const archive = await sampleArchive();
  assert.ok((await goodbyeWalk(archive)) > 0);
  for (let len = 0; len < archive.length; len++) {
    const cut = archive.subarray(0, len);
    const out = await goodbyeWalk(cut).catch((err: unknown) => err);
    // a cut right after a subdirectory's GOODBYE reads as an archive of that subdirectory
    const endsWithTable = len >= 24 && cut.readBigUInt64LE(len - 24) === 0xef5eed5b753e1555n;
    assert.ok(out instanceof CorruptDataError || endsWithTable, `truncated to ${len}: ${String(out)}`);
  }
});

test('mutated archives decode or fail with a declared error, never crash or hang', async () => {
  const archive = await sampleArchive();
  // header offsets of the first items are where interesting integers do the most damage
  const intOffsets = [0, 8, 16, 24, 56, 64, 72, archive.length - 24, archive.length - 16, archive.length - 8];
  const seed = Number(process.env.STOWAGE_FUZZ_SEED ?? Math.floor(Math.random() * 2 ** 32)) >>> 0;
  const rng = new Prng(seed);
  const until = Date.now() + Math.min(fuzzSeconds(), 2) * 1000;
  let n = 0;
  while (Date.now() < until) {
    const input = mutate(rng, archive, { intOffsets });
    try {
      await declaredOutcome(input, n % 2 === 1);
    } catch (err) {
      throw new Error(`pxar fuzz failed at iteration ${n}; replay with STOWAGE_FUZZ_SEED=${seed}`, {
        cause: err,
      });
    }
    n++;
  }
  console.log(`pxar decoder: ${n} mutated archives`);
});

test('a single member decoded on its own range rejects stray items after it', async () => {
  const archive = await sampleArchive();
  const acc = PxarAccessor.open(readAtBuffer(archive));
  const a = (await acc.lookup('/a'))!;
  // decode 'a' with the rest of the archive as its range: the next item is another FILENAME
  const d = new PxarDecoder(sequentialFromReadAt(readAtBuffer(archive), a.range.start), {
    single: true,
    rootPath: Buffer.from('/a'),
  });
  assert.equal((await d.next())?.kind, 'file');
  await assert.rejects(d.next(), /FILENAME outside a directory/);
});
