/**
 * pxar archives built byte by byte from the format's documentation (the pxar crate's
 * format/mod.rs and PBS's docs), not by our encoder: they stand for archives from
 * proxmox-backup-client or a third-party PBS client (test/pxar/pxar-fixture.test.ts decodes and
 * searches them; test/e2e/pxar-third-party.test.ts backs them up and restores them).
 */
import { sipHash24, sipKey } from '../../src/pxar/siphash.js';
// item types, as format/mod.rs defines them
const ENTRY = 0xd5956474e588acefn;
const ENTRY_V1 = 0x11da850a1c1cceffn;
const FILENAME = 0x16701121063917b3n;
const SYMLINK = 0x27f971e7dbf5dc5fn;
const XATTR = 0x0dab0229b57dcd03n;
const ACL_USER = 0x2ce8540a457d55b8n;
const ACL_GROUP_OBJ = 0x10868031e9582876n;
const HARDLINK = 0x51269c8422bd7275n;
const PAYLOAD = 0x28147a1b0b7c1a25n;
const GOODBYE = 0x2fec4fa642d5731dn;
const TAIL_MARKER = 0xef5eed5b753e1555n;
// SipHash-2-4 keys: sha1('PROXMOX ARCHIVE FORMAT') split in two
const KEY = sipKey(0x83ac3f1cfbb450dbn, 0xaa4f1b6879369fbdn);
// binary_tree_array.rs: the slot order for tables of 1 and 4 items
const TREE_ORDER: Record<number, number[]> = { 1: [0], 4: [2, 1, 3, 0] };

class ArchiveBytes {
  private parts: Buffer[] = [];
  length = 0;
  push(b: Buffer): number {
    const at = this.length;
    this.parts.push(b);
    this.length += b.length;
    return at;
  }
  /** header: htype u64 LE, full size u64 LE (header included); then the content */
  item(htype: bigint, content: Buffer): number {
    const h = Buffer.alloc(16);
    h.writeBigUInt64LE(htype, 0);
    h.writeBigUInt64LE(BigInt(16 + content.length), 8);
    return this.push(Buffer.concat([h, content]));
  }
  bytes(): Buffer {
    return Buffer.concat(this.parts);
  }
}

function u64s(...v: bigint[]): Buffer {
  const b = Buffer.alloc(8 * v.length);
  v.forEach((x, i) => b.writeBigUInt64LE(x, 8 * i));
  return b;
}

/** ENTRY: mode u64, flags u64, uid u32, gid u32, mtime secs i64, nanos u32, padding u32. */
function stat(mode: number, uid: number, gid: number, secs: bigint, nanos: number): Buffer {
  const b = Buffer.alloc(40);
  b.writeBigUInt64LE(BigInt(mode), 0);
  b.writeUInt32LE(uid, 16);
  b.writeUInt32LE(gid, 20);
  b.writeBigInt64LE(secs, 24);
  b.writeUInt32LE(nanos, 32);
  return b;
}

const cstr = (s: string) => Buffer.from(`${s}\0`);

/** GOODBYE: items sorted by hash in tree order, offsets back from the GOODBYE, then the tail. */
function goodbye(
  a: ArchiveBytes,
  members: { name: string; start: number; end: number; hashAs?: string }[],
  entryAt: number,
): number {
  const at = a.length;
  const sorted = members
    .map((m) => ({
      hash: sipHash24(KEY, Buffer.from(m.hashAs ?? m.name)),
      offset: BigInt(at - m.start),
      size: BigInt(m.end - m.start),
    }))
    .sort((x, y) => (x.hash < y.hash ? -1 : 1));
  const items = TREE_ORDER[sorted.length]!.map((i) => sorted[i]!);
  const size = 16 + 24 * (items.length + 1);
  const content = Buffer.concat([
    ...items.map((it) => u64s(it.hash, it.offset, it.size)),
    u64s(TAIL_MARKER, BigInt(at - entryAt), BigInt(size)),
  ]);
  return a.item(GOODBYE, content);
}

export function buildFixture(
  opts: { legacyEntry?: boolean; collide?: boolean } = { legacyEntry: true },
): Buffer {
  const a = new ArchiveBytes();
  const rootEntry = a.item(ENTRY, stat(0o40755, 0, 0, 1_700_000_000n, 5));

  // "a.txt": a legacy ENTRY_V1 (mtime in ns), an xattr, a payload
  const aStart = a.item(FILENAME, cstr('a.txt'));
  if (opts.legacyEntry) {
    const v1 = Buffer.alloc(32);
    v1.writeBigUInt64LE(0o100640n, 0);
    v1.writeUInt32LE(1000, 16);
    v1.writeUInt32LE(1000, 20);
    v1.writeBigUInt64LE(1_600_000_000_123_456_789n, 24);
    a.item(ENTRY_V1, v1);
  } else {
    a.item(ENTRY, stat(0o100640, 1000, 1000, 1_600_000_000n, 123_456_789));
  }
  a.item(XATTR, Buffer.concat([cstr('user.origin'), Buffer.from('pbs')]));
  a.item(PAYLOAD, Buffer.from('hello from pbs\n'));
  const aEnd = a.length;

  // "dir": an ACL and one empty file
  const dStart = a.item(FILENAME, cstr('dir'));
  const dEntry = a.item(ENTRY, stat(0o40750, 0, 33, 1_650_000_000n, 0));
  a.item(ACL_USER, u64s(1001n, 7n));
  a.item(ACL_GROUP_OBJ, u64s(5n));
  const fStart = a.item(FILENAME, cstr('f'));
  a.item(ENTRY, stat(0o100600, 0, 0, 0n, 0));
  a.item(PAYLOAD, Buffer.alloc(0));
  const fEnd = a.length;
  goodbye(a, [{ name: 'f', start: fStart, end: fEnd }], dEntry);
  const dEnd = a.length;

  // "hl": a hardlink to a.txt: offset back from this FILENAME to a.txt's FILENAME
  const hStart = a.length;
  a.item(FILENAME, cstr('hl'));
  a.item(HARDLINK, Buffer.concat([u64s(BigInt(hStart - aStart)), cstr('a.txt')]));
  const hEnd = a.length;

  const sStart = a.item(FILENAME, cstr('sym'));
  a.item(ENTRY, stat(0o120777, 0, 0, -1n, 999_999_999));
  a.item(SYMLINK, cstr('a.txt'));
  const sEnd = a.length;

  goodbye(
    a,
    [
      { name: 'a.txt', start: aStart, end: aEnd },
      { name: 'dir', start: dStart, end: dEnd },
      // collide: 'hl' and 'sym' stored under the hash of 'a.txt', as if SipHash collided
      { name: 'hl', start: hStart, end: hEnd, hashAs: opts.collide ? 'a.txt' : undefined },
      { name: 'sym', start: sStart, end: sEnd, hashAs: opts.collide ? 'a.txt' : undefined },
    ],
    rootEntry,
  );
  return a.bytes();
}

/**
 * Format version 2, as PBS clients write with `--change-detection-mode` data or metadata: the
 * archive (`.mpxar`) starts with FORMAT_VERSION 2 and a PRELUDE, files carry PAYLOAD_REF
 * (offset of their PAYLOAD item in the payload stream, size); the payload stream (`.ppxar`) is
 * framed by start and tail markers. The root's goodbye tail points at the archive's start.
 */
export function buildSplitFixture(): { meta: Buffer; payload: Buffer } {
  const payload = new ArchiveBytes();
  payload.item(0x834c68c2194a4ed2n, Buffer.alloc(0)); // PAYLOAD_START_MARKER
  const fRef = payload.item(PAYLOAD, Buffer.from('abc'));
  const gRef = payload.item(PAYLOAD, Buffer.from('defg'));
  payload.item(0x6c72b78b984c81b5n, Buffer.alloc(0)); // PAYLOAD_TAIL_MARKER

  const PAYLOAD_REF = 0x419d3d6bc4ba977en;
  const a = new ArchiveBytes();
  a.item(0x730f6c75df16a40dn, u64s(2n)); // FORMAT_VERSION 2
  a.item(0xe309d79d9f7b771bn, Buffer.from('prelude: pxar-split')); // PRELUDE
  a.item(ENTRY, stat(0o40755, 0, 0, 100n, 0));
  const fStart = a.item(FILENAME, cstr('f'));
  a.item(ENTRY, stat(0o100644, 0, 0, 101n, 0));
  a.item(PAYLOAD_REF, u64s(BigInt(fRef), 3n));
  const fEnd = a.length;
  const gStart = a.item(FILENAME, cstr('g'));
  a.item(ENTRY, stat(0o100644, 0, 0, 102n, 0));
  a.item(PAYLOAD_REF, u64s(BigInt(gRef), 4n));
  const gEnd = a.length;
  const at = a.length;
  const items = [
    { hash: sipHash24(KEY, Buffer.from('f')), offset: BigInt(at - fStart), size: BigInt(fEnd - fStart) },
    { hash: sipHash24(KEY, Buffer.from('g')), offset: BigInt(at - gStart), size: BigInt(gEnd - gStart) },
  ].sort((x, y) => (x.hash < y.hash ? -1 : 1));
  const size = 16 + 24 * 3;
  // binary_tree_array.rs: two items go to slots [1, 0]
  a.item(
    GOODBYE,
    Buffer.concat([
      u64s(items[1]!.hash, items[1]!.offset, items[1]!.size),
      u64s(items[0]!.hash, items[0]!.offset, items[0]!.size),
      u64s(TAIL_MARKER, BigInt(at), BigInt(size)),
    ]),
  );
  return { meta: a.bytes(), payload: payload.bytes() };
}
