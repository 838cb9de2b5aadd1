/**
 * Fuzz targets, one per pure codec: on mutated versions of valid encodings, each decoder returns
 * or throws a declared StowageError (never a TypeError/RangeError crash, never a hang, never an
 * allocation beyond what the format bounds), and decode(encode(x)) == x for valid inputs.
 * `STOWAGE_FUZZ_SECONDS` sets the time per target, `STOWAGE_FUZZ_SEED` replays a failure. The
 * regression rows at the end are inputs the fuzzer once crashed on.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { compress as zstdCompress } from 'zstd-napi';
import {
  BLOB_MAGIC,
  MAX_BLOB_SIZE,
  decodeBlob,
  encodeBlob,
  rewriteBlobCrc,
} from '../../src/datastore/data-blob.js';
import { FixedIndexReader, FixedIndexWriter } from '../../src/datastore/fixed-index.js';
import { DynamicIndexReader, DynamicIndexWriter } from '../../src/datastore/dynamic-index.js';
import { INDEX_HEADER_SIZE } from '../../src/datastore/index-file.js';
import {
  decodeManifest,
  encodeManifest,
  manifestToJson,
  signedManifestJson,
  type BackupManifest,
} from '../../src/datastore/manifest.js';
import { formatPropertyString, parsePropertyString } from '../../src/config/property-string.js';
import { formatSectionConfig, parseSectionConfig, type Section } from '../../src/config/section-config.js';
import { CorruptDataError } from '../../src/errors.js';
import { Prng, assertDeclaredOutcome, mutate, mutateText, runFuzz } from './mutator.js';

const dir = mkdtempSync(join(tmpdir(), 'stowage-fuzz-'));
after(() => rmSync(dir, { recursive: true, force: true }));

function report(name: string, n: number): void {
  // one line per target, so a CI log shows how much each one ran
  console.log(`fuzz ${name}: ${n} inputs`);
}

// ---------------------------------------------------------------------------------------------
// data blob

function randomPayload(rng: Prng): Buffer {
  const len = rng.pick([0, 1, 7, 100, 4096, 70_000]);
  // compressible or not, so both blob kinds are seeds
  return rng.int(2) === 0 ? rng.bytes(len) : Buffer.alloc(len, rng.pick(['a', 'stowage ', '\0']));
}

/** An "encrypted" blob: magic, CRC, iv and tag, opaque body — what a client would upload. */
function encryptedBlob(rng: Prng, kind: 'encrypted' | 'encryptedCompressed'): Buffer {
  const b = Buffer.concat([BLOB_MAGIC[kind], Buffer.alloc(4), rng.bytes(32 + rng.int(200))]);
  rewriteBlobCrc(b);
  return b;
}

test('fuzz: data blob decode', () => {
  const rng0 = new Prng(1);
  const corpus = [
    encodeBlob(Buffer.alloc(10_000, 'x')),
    encodeBlob(rng0.bytes(300)),
    encodeBlob(Buffer.alloc(0)),
    encryptedBlob(rng0, 'encrypted'),
    encryptedBlob(rng0, 'encryptedCompressed'),
  ];
  const n = runFuzz('data blob', (rng) => {
    const payload = randomPayload(rng);
    const blob = encodeBlob(payload, { compress: rng.int(2) === 0 });
    assert.deepEqual(decodeBlob(blob), payload, 'decode(encode(x)) == x');

    const bad = mutate(rng, rng.pick([blob, ...corpus]), { corpus, intOffsets: [8, 12, 16, 17] });
    // mostly with a right CRC, so the mutation reaches the zstd frame behind it
    if (bad.length >= 12 && rng.int(4) !== 0) rewriteBlobCrc(bad);
    const out = assertDeclaredOutcome(() => decodeBlob(bad));
    if (Buffer.isBuffer(out)) assert.ok(out.length <= MAX_BLOB_SIZE, `decoded ${out.length} bytes`);
  });
  report('data blob', n);
});

// ---------------------------------------------------------------------------------------------
// fixed and dynamic index

let seq = 0;

function fixedIndexBytes(rng: Prng): Buffer {
  const chunkSize = rng.pick([1, 512, 4096, 4 * 1024 * 1024]);
  const size = rng.int(6) * chunkSize + rng.int(chunkSize);
  const path = join(dir, `f${seq++}.fidx`);
  const w = FixedIndexWriter.create(path, { size, chunkSize, ctime: rng.int(2 ** 31) });
  for (let i = 0; i < w.count; i++) w.setDigest(i, rng.bytes(32));
  w.close();
  const bytes = readFileSync(path);
  rmSync(path);
  return bytes;
}

function dynamicIndexBytes(rng: Prng): { bytes: Buffer; ends: number[] } {
  const path = join(dir, `d${seq++}.didx`);
  const w = DynamicIndexWriter.create(path, { ctime: rng.int(2 ** 31) });
  const ends: number[] = [];
  let end = 0;
  for (let i = rng.int(6); i > 0; i--) {
    end += 1 + rng.int(1 << 22);
    ends.push(end);
    w.addChunk(end, rng.bytes(32));
  }
  w.close();
  const bytes = readFileSync(path);
  rmSync(path);
  return { bytes, ends };
}

/** Everything a reader offers, so a mutation that parses cannot crash a later caller either. */
function walkIndex(index: FixedIndexReader | DynamicIndexReader): void {
  let last = 0;
  for (let i = 0; i < index.count; i++) {
    const { start, end } = index.chunkRange(i);
    assert.ok(start >= 0 && start <= end && end <= index.totalSize, `chunk ${i}: [${start}, ${end})`);
    assert.equal(start, last, `chunk ${i} starts where the previous ended`);
    last = end;
    assert.equal(index.digest(i).length, 32);
  }
  index.computeCsum();
  if (index.totalSize > 0) index.chunkIndexAt(index.totalSize - 1);
}

const HEADER_INTS = [24, 28, 64, 68, 72, 76];

test('fuzz: fixed index parse', () => {
  const corpus = [fixedIndexBytes(new Prng(1)), fixedIndexBytes(new Prng(2))];
  const n = runFuzz('fixed index', (rng) => {
    const bytes = rng.int(8) === 0 ? fixedIndexBytes(rng) : rng.pick(corpus);
    const index = FixedIndexReader.fromBuffer(bytes, { verifyCsum: true });
    assert.equal(index.size, Number(bytes.readBigUInt64LE(64)), 'size round-trips');
    assert.equal(index.count, (bytes.length - INDEX_HEADER_SIZE) / 32);
    walkIndex(index);

    const bad = mutate(rng, bytes, { corpus, intOffsets: HEADER_INTS });
    const verifyCsum = rng.int(2) === 0;
    const out = assertDeclaredOutcome(() => FixedIndexReader.fromBuffer(bad, { verifyCsum }));
    if (out instanceof FixedIndexReader) assertDeclaredOutcome(() => walkIndex(out));
  });
  report('fixed index', n);
});

test('fuzz: dynamic index parse', () => {
  const seeds = [dynamicIndexBytes(new Prng(1)), dynamicIndexBytes(new Prng(3))];
  const corpus = seeds.map((s) => s.bytes);
  const n = runFuzz('dynamic index', (rng) => {
    const { bytes, ends } = rng.int(8) === 0 ? dynamicIndexBytes(rng) : rng.pick(seeds);
    const index = DynamicIndexReader.fromBuffer(bytes, { verifyCsum: true });
    assert.deepEqual(
      ends.map((_, i) => index.endOffset(i)),
      ends,
      'end offsets round-trip',
    );
    walkIndex(index);

    const offsets = [...HEADER_INTS, ...ends.map((_, i) => INDEX_HEADER_SIZE + i * 40)];
    const bad = mutate(rng, bytes, { corpus, intOffsets: offsets });
    const verifyCsum = rng.int(2) === 0;
    const out = assertDeclaredOutcome(() => DynamicIndexReader.fromBuffer(bad, { verifyCsum }));
    if (out instanceof DynamicIndexReader) assertDeclaredOutcome(() => walkIndex(out));
  });
  report('dynamic index', n);
});

// ---------------------------------------------------------------------------------------------
// property string

const VALUE_CHARS = 'abc XYZ09=,"\\\n\t-_.:/é🙂';
const KEY_CHARS = 'abcdefghijklmnopqrstuvwxyz0123456789_-';

function randomText(rng: Prng, alphabet: string, max: number): string {
  const chars = [...alphabet];
  let s = '';
  for (let i = rng.int(max + 1); i > 0; i--) s += rng.pick(chars);
  return s;
}

function randomKey(rng: Prng): string {
  return rng.pick([...'abcdefghijklmnopqrstuvwxyzABC']) + randomText(rng, KEY_CHARS, 8);
}

test('fuzz: property string parse', () => {
  const alphabet = `${VALUE_CHARS}${KEY_CHARS}`;
  const n = runFuzz('property string', (rng) => {
    const entries: Array<[string, string]> = [];
    const keys = new Set<string>();
    for (let i = rng.int(5); i > 0; i--) {
      const key = randomKey(rng);
      if (keys.has(key)) continue;
      keys.add(key);
      entries.push([key, randomText(rng, VALUE_CHARS, 12)]);
    }
    const defaultKey = entries.length > 0 && rng.int(2) === 0 ? entries[0]![0] : undefined;
    const text = formatPropertyString(entries, { defaultKey });
    const parsed = parsePropertyString(text, { defaultKey });
    const sorted = (e: Array<[string, string]>) => [...e].sort(([a], [b]) => (a < b ? -1 : 1));
    assert.deepEqual(sorted(parsed), sorted(entries), `parse(format(x)) == x for ${JSON.stringify(text)}`);

    const bad = mutateText(rng, text, { alphabet });
    const out = assertDeclaredOutcome(() => parsePropertyString(bad, { defaultKey }));
    if (Array.isArray(out)) {
      // what parses also formats and parses back to itself
      const again = assertDeclaredOutcome(() => formatPropertyString(out, { defaultKey }));
      if (typeof again === 'string')
        assert.deepEqual(sorted(parsePropertyString(again, { defaultKey })), sorted(out));
    }
  });
  report('property string', n);
});

// ---------------------------------------------------------------------------------------------
// section config

function randomSections(rng: Prng): Section[] {
  const sections: Section[] = [];
  const headers = new Set<string>();
  for (let i = rng.int(4); i > 0; i--) {
    const type = rng.pick(['datastore', 'user', 'token', 'sync', 'acl-x']);
    const id = randomText(rng, 'abc012@!._-:', 6) || 'x';
    if (headers.has(`${type}: ${id}`)) continue;
    headers.add(`${type}: ${id}`);
    const props: Array<[string, string]> = [];
    const keys = new Set<string>();
    for (let j = rng.int(5); j > 0; j--) {
      const key = randomKey(rng);
      if (keys.has(key)) continue;
      keys.add(key);
      props.push([key, randomText(rng, 'ab c,=/"\\é01', 10).trim()]);
    }
    sections.push({ type, id, props });
  }
  return sections;
}

test('fuzz: section config parse', () => {
  const alphabet = 'abc: \t\n#,=-_0é';
  const n = runFuzz('section config', (rng) => {
    const sections = randomSections(rng);
    const text = formatSectionConfig(sections);
    assert.deepEqual(parseSectionConfig(text), sections, 'parse(format(x)) == x');

    const bad = mutateText(rng, text, { alphabet });
    const out = assertDeclaredOutcome(() => parseSectionConfig(bad));
    if (Array.isArray(out)) {
      const again = assertDeclaredOutcome(() => formatSectionConfig(out as Section[]));
      if (typeof again === 'string') assert.deepEqual(parseSectionConfig(again), out);
    }
  });
  report('section config', n);
});

// ---------------------------------------------------------------------------------------------
// manifest

function randomManifest(rng: Prng): BackupManifest {
  const files = [];
  for (let i = rng.int(4); i > 0; i--) {
    files.push({
      filename: `${randomKey(rng)}${rng.pick(['.didx', '.fidx', '.blob'])}`,
      'crypt-mode': rng.pick(['none', 'encrypt', 'sign-only'] as const),
      size: rng.int(2 ** 40),
      csum: rng.bytes(32).toString('hex'),
    });
  }
  return {
    'backup-type': rng.pick(['host', 'vm', 'ct'] as const),
    'backup-id': randomKey(rng),
    'backup-time': rng.int(2 ** 33),
    files,
    unprotected:
      rng.int(2) === 0
        ? {}
        : { notes: randomText(rng, VALUE_CHARS, 20), verify_state: { upid: 'x', state: 'ok' } },
    signature: rng.int(2) === 0 ? null : rng.bytes(32).toString('hex'),
  };
}

/** Values that JSON checks get wrong: every type, empty ones, boundaries, a `__proto__` key. */
const ODD_JSON: readonly unknown[] = [
  null,
  true,
  0,
  -1,
  1.5,
  2 ** 53,
  1e308,
  '',
  '../x',
  'a'.repeat(1000),
  [],
  [null],
  {},
  JSON.parse('{"__proto__": {"polluted": 1}}'),
];

/** Replace one value somewhere in `json` (an object or array) with an odd one, or delete it. */
function replaceRandomValue(rng: Prng, json: unknown): void {
  let node = json;
  for (let depth = 0; depth < 4; depth++) {
    if (node === null || typeof node !== 'object') return;
    const keys = Object.keys(node);
    if (keys.length === 0) return;
    const key = rng.pick(keys);
    const child = (node as Record<string, unknown>)[key];
    if (child !== null && typeof child === 'object' && rng.int(2) === 0) {
      node = child;
      continue;
    }
    if (rng.int(5) === 0 && !Array.isArray(node)) delete (node as Record<string, unknown>)[key];
    else (node as Record<string, unknown>)[key] = rng.pick(ODD_JSON);
    return;
  }
}

test('fuzz: manifest decode', () => {
  const n = runFuzz('manifest', (rng) => {
    const m = randomManifest(rng);
    const blob = encodeManifest(m);
    assert.deepEqual(decodeManifest(blob), m, 'decode(encode(x)) == x');

    // damage the blob, the JSON text inside it, or one value of the JSON (re-encoded, so both
    // of the latter pass the CRC and reach the manifest checks)
    let bad: Buffer;
    const kind = rng.int(3);
    if (kind === 0) {
      bad = mutate(rng, blob, { intOffsets: [8, 12] });
      if (bad.length >= 12 && rng.int(2) === 0) rewriteBlobCrc(bad);
    } else if (kind === 1) {
      bad = encodeBlob(
        Buffer.from(mutateText(rng, manifestToJson(m), { alphabet: '{}[]",:0-.ntrue ' }), 'utf8'),
      );
    } else {
      const json = JSON.parse(manifestToJson(m)) as unknown;
      replaceRandomValue(rng, json);
      bad = encodeBlob(Buffer.from(JSON.stringify(json), 'utf8'));
    }
    const out = assertDeclaredOutcome(() => decodeManifest(bad));
    if (!(out instanceof Error)) {
      // what the server does next with a manifest it accepted
      const accepted = out as BackupManifest;
      assertDeclaredOutcome(() => signedManifestJson(accepted));
      assert.deepEqual(
        decodeManifest(encodeManifest(accepted)),
        accepted,
        'an accepted manifest round-trips',
      );
    }
  });
  report('manifest', n);
});

// ---------------------------------------------------------------------------------------------
// regression rows: inputs that once crashed a decoder

/** A zstd frame whose header claims `claimed` bytes of content (but holds none). */
function zstdFrameClaiming(claimed: bigint): Buffer {
  const frame = Buffer.from(zstdCompress(Buffer.alloc(0)));
  // rebuild the header: magic, descriptor with an 8-byte content size and single segment
  const header = Buffer.alloc(4 + 1 + 8);
  frame.copy(header, 0, 0, 4);
  header[4] = 0xe0; // FCS flag 3 (8 bytes), single-segment
  header.writeBigUInt64LE(claimed, 5);
  // an empty last raw block
  return Buffer.concat([header, Buffer.from([0x01, 0x00, 0x00])]);
}

function compressedBlobOf(body: Buffer): Buffer {
  const blob = Buffer.concat([BLOB_MAGIC.compressed, Buffer.alloc(4), body]);
  rewriteBlobCrc(blob);
  return blob;
}

test('regression: a compressed blob whose zstd frame claims 4 GiB is refused without allocating it', () => {
  for (const claimed of [4n * 1024n ** 3n, BigInt(MAX_BLOB_SIZE) + 1n, 2n ** 40n]) {
    const blob = compressedBlobOf(zstdFrameClaiming(claimed));
    assert.throws(
      () => decodeBlob(blob),
      (err: unknown) => err instanceof CorruptDataError && /claims|exceeds/.test(err.message),
      `a frame claiming ${claimed} bytes`,
    );
  }
});

test('regression: a zstd bomb of frames that declare no size is refused once it exceeds the blob maximum', () => {
  const mib = Buffer.from(zstdCompress(Buffer.alloc(1024 * 1024), { contentSizeFlag: false }));
  const frames = MAX_BLOB_SIZE / (1024 * 1024) + 1;
  const bomb = compressedBlobOf(Buffer.concat(Array.from({ length: frames }, () => mib)));
  assert.ok(bomb.length < 100_000, `${bomb.length} bytes of blob`);
  assert.throws(() => decodeBlob(bomb), { code: 'CORRUPT_DATA', message: /exceeds 134217728 bytes/ });
});

test('regression: a truncated or corrupt zstd frame is refused, and the next valid blob still decodes', () => {
  const payload = Buffer.alloc(10_000, 'stowage ');
  const good = encodeBlob(payload);
  // a frame that declares no size is decoded as a stream; cut short, the stream stays mid-frame
  const frame = Buffer.from(zstdCompress(payload, { contentSizeFlag: false }));
  const truncated = compressedBlobOf(frame.subarray(0, frame.length - 4));
  assert.throws(() => decodeBlob(truncated), { code: 'CORRUPT_DATA', message: /zstd data is corrupt/ });
  assert.deepEqual(decodeBlob(good), payload);
  const flipped = Buffer.from(frame);
  flipped[flipped.length - 2] = flipped[flipped.length - 2]! ^ 0xff;
  assert.throws(() => decodeBlob(compressedBlobOf(flipped)), { code: 'CORRUPT_DATA' });
  assert.deepEqual(decodeBlob(good), payload);
});

test("regression: a '__proto__' key in a manifest's unprotected part survives a rewrite", () => {
  const text =
    '{"backup-type":"host","backup-id":"x","backup-time":1,"files":[],' +
    '"unprotected":{"__proto__":{"polluted":1},"notes":"n"},"signature":null}';
  const m = decodeManifest(encodeBlob(Buffer.from(text)));
  const again = decodeManifest(encodeManifest(m));
  assert.deepEqual(Object.keys(again.unprotected), ['__proto__', 'notes']);
  assert.deepEqual(again, m);
});
