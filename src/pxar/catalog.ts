/**
 * The file catalog `catalog.pcat1` as PBS writes it beside a snapshot's pxar archives
 * (pbs-datastore `catalog.rs`, magic PROXMOX_CATALOG_FILE_MAGIC_1_0): the tree's directories
 * and their members' names, types, and for files size and mtime, so that browsing a snapshot
 * or finding a file reads the small catalog, not the archive.
 *
 * ```
 * magic[8]           sha256("Proxmox Backup Catalog file v1.0")[0..8]
 * directory blocks   each written when its directory ends: children before parents
 * root block         the catalog's root directory: one 'd' member per archive (NAME.pxar.didx)
 * root offset u64 LE where the root block starts
 *
 * block   = varint(len(table)) table
 * table   = varint(count) member*
 * member  = type u8 ('d' 'f' 'l' 'h' 'b' 'c' 'p' 's') varint(len(name)) name, then
 *           'd': varint(block start - child block start)   (children come earlier)
 *           'f': varint(size) varint_i64(mtime seconds)
 * ```
 *
 * varint: 7 bits a byte, least significant first, high bit set on all but the last byte; a
 * negative i64 stores -v that way with the high bit also on its last byte, then a 0 byte.
 */
import { BadRequestError, CorruptDataError } from '../errors.js';
import type { TreeCatalog } from './create.js';
import type { PxarEntry } from './decoder.js';
import { MODE } from './format.js';
import { findByGlob } from './glob.js';
import type { PxarReadAt } from './io.js';

export const CATALOG_MAGIC = Buffer.from([145, 253, 96, 249, 196, 103, 88, 213]);

export type CatalogEntryType = 'd' | 'f' | 'l' | 'h' | 'b' | 'c' | 'p' | 's';
const TYPES = new Set<string>(['d', 'f', 'l', 'h', 'b', 'c', 'p', 's']);

export interface CatalogEntry {
  name: Buffer;
  type: CatalogEntryType;
  /** Directory: where its block starts in the catalog. */
  start?: number;
  /** File: size in bytes and mtime in seconds since the epoch. */
  size?: number;
  mtime?: number;
}

/** PBS refuses longer names when reading (`name_buf` of 4096 bytes). */
const MAX_NAME = 4095;

// ----- varints (pure) ---------------------------------------------------------------------------

export function encodeCatalogU64(v: number | bigint): Buffer {
  let d = BigInt(v);
  if (d < 0n) throw new BadRequestError('catalog u64 must not be negative');
  const out: number[] = [];
  while (d >= 128n) {
    out.push(Number(d & 127n) | 128);
    d >>= 7n;
  }
  out.push(Number(d));
  return Buffer.from(out);
}

export function encodeCatalogI64(v: number | bigint): Buffer {
  const x = BigInt(v);
  if (x >= 0n) return encodeCatalogU64(x);
  let d = -x;
  const out: number[] = [];
  while (d >= 128n) {
    out.push(Number(d & 127n) | 128);
    d >>= 7n;
  }
  out.push(Number(d) | 128, 0);
  return Buffer.from(out);
}

/** A cursor over one block; running past its end is corruption, not a crash. */
class BlockCursor {
  pos = 0;
  constructor(
    private readonly b: Buffer,
    private readonly at: number,
  ) {}
  get done(): boolean {
    return this.pos >= this.b.length;
  }
  byte(): number {
    if (this.pos >= this.b.length) throw catalogCorrupt(this.at + this.pos, 'entry runs past its block');
    return this.b[this.pos++]!;
  }
  bytes(n: number): Buffer {
    if (this.pos + n > this.b.length) throw catalogCorrupt(this.at + this.pos, 'entry runs past its block');
    const out = this.b.subarray(this.pos, this.pos + n);
    this.pos += n;
    return out;
  }
  // plain number arithmetic (exact to 2^53): BigInt per byte made a 500000-member block slow
  u64(): number {
    let v = 0;
    for (let i = 0; i < 10; i++) {
      const t = this.byte();
      v += (t & 127) * 2 ** (7 * i);
      if (t < 128) return safe(v, this.at + this.pos);
    }
    throw catalogCorrupt(this.at + this.pos, 'varint without end');
  }
  i64(): number {
    let v = 0;
    for (let i = 0; i < 11; i++) {
      const t = this.byte();
      if (t === 0) return v === 0 ? 0 : -safe(v, this.at + this.pos);
      v += (t & 127) * 2 ** (7 * i);
      if (t < 128) return safe(v, this.at + this.pos);
    }
    throw catalogCorrupt(this.at + this.pos, 'varint without end');
  }
}

function safe(v: number, at: number): number {
  if (v > Number.MAX_SAFE_INTEGER) throw catalogCorrupt(at, `value ${v} out of range`);
  return v;
}

function catalogCorrupt(at: number, what: string): CorruptDataError {
  return new CorruptDataError(`catalog is corrupt at offset ${at}: ${what}`);
}

// ----- writer ----------------------------------------------------------------------------------

/**
 * An open directory's members. Other members are encoded at once into one growing buffer (a
 * few dozen bytes each, no object per member: a directory of a million files stays small);
 * subdirectories are kept aside with the buffer position they go to, because their offsets are
 * relative to this block's start, known only when it is written.
 */
class DirInfo {
  bytes = Buffer.allocUnsafe(256);
  length = 0;
  count = 0;
  readonly subdirs: { at: number; name: Buffer; start: number }[] = [];
  constructor(readonly name: Buffer) {}

  /**
   * A member: its type, name and, for a file, size and mtime, written in place (varints in
   * number arithmetic, exact to 2^53: a BigInt and a Buffer per field were most of a member's
   * cost).
   */
  append(type: number, name: Buffer, size?: number, mtime?: number): void {
    // type, name length and name, two varints of at most 11 bytes
    const most = 1 + 10 + name.length + 22;
    if (this.length + most > this.bytes.length) {
      const grown = Buffer.allocUnsafe(Math.max(this.bytes.length * 2, this.length + most));
      this.bytes.copy(grown, 0, 0, this.length);
      this.bytes = grown;
    }
    const b = this.bytes;
    b[this.length++] = type;
    this.length = writeVarint(b, this.length, name.length);
    this.length += name.copy(b, this.length);
    if (size !== undefined) {
      this.length = writeVarint(b, this.length, size);
      const m = mtime!;
      if (m >= 0) this.length = writeVarint(b, this.length, m);
      else {
        // as encodeCatalogI64: -v, the high bit on its last byte too, then a 0 byte
        const end = writeVarint(b, this.length, -m);
        b[end - 1]! |= 128;
        b[end] = 0;
        this.length = end + 1;
      }
    }
    this.count++;
  }
}

/** `v` (0 <= v < 2^53) as a catalog varint into `b` at `at`; returns where it ends. */
function writeVarint(b: Buffer, at: number, v: number): number {
  while (v >= 128) {
    b[at++] = (v % 128) | 128;
    v = Math.floor(v / 128);
  }
  b[at++] = v;
  return at;
}

/**
 * Writes a catalog as a tree is walked (the `TreeCatalog` calls of createArchive): each
 * directory's block goes out when it ends, so memory holds the open directories' members only.
 * `write` receives the bytes in order (e.g. pushes to a blob being built, or appends to a file).
 */
export class CatalogWriter implements TreeCatalog {
  private readonly stack: DirInfo[] = [new DirInfo(Buffer.from('/'))];
  private pos = 0;
  private readonly chunks: Buffer[] = [];
  private finished = false;

  constructor(private readonly write?: (chunk: Buffer) => void) {
    this.out(CATALOG_MAGIC);
  }

  startDirectory(name: Uint8Array | string): void {
    this.top();
    this.stack.push(new DirInfo(nameBytes(name)));
  }

  endDirectory(): void {
    if (this.stack.length < 2) throw new BadRequestError('catalog: no open directory to end');
    const dir = this.stack.pop()!;
    const start = this.writeBlock(dir);
    const parent = this.top();
    parent.subdirs.push({ at: parent.length, name: dir.name, start });
    parent.count++;
  }

  addFile(name: Uint8Array | string, size: number, mtimeSecs: number): void {
    this.top().append(TYPE_FILE, nameBytes(name, false), size, mtimeSecs);
  }
  addSymlink(name: Uint8Array | string): void {
    this.add('l', name);
  }
  addHardlink(name: Uint8Array | string): void {
    this.add('h', name);
  }
  addBlockDevice(name: Uint8Array | string): void {
    this.add('b', name);
  }
  addCharDevice(name: Uint8Array | string): void {
    this.add('c', name);
  }
  addFifo(name: Uint8Array | string): void {
    this.add('p', name);
  }
  addSocket(name: Uint8Array | string): void {
    this.add('s', name);
  }

  /**
   * Write the root block and the trailing root offset. Returns the whole catalog when no `write`
   * callback was given, else an empty buffer.
   */
  finish(): Buffer {
    if (this.stack.length !== 1)
      throw new BadRequestError(`catalog: ${this.stack.length - 1} directories left open`);
    const start = this.writeBlock(this.stack.pop()!);
    const tail = Buffer.alloc(8);
    tail.writeBigUInt64LE(BigInt(start));
    this.out(tail);
    this.finished = true;
    return Buffer.concat(this.chunks);
  }

  private add(type: Exclude<CatalogEntryType, 'd' | 'f'>, name: Uint8Array | string): void {
    this.top().append(type.charCodeAt(0), nameBytes(name, false));
  }

  private writeBlock(dir: DirInfo): number {
    const start = this.pos;
    const parts: Buffer[] = [encodeCatalogU64(dir.count)];
    let from = 0;
    for (const sub of dir.subdirs) {
      parts.push(
        dir.bytes.subarray(from, sub.at),
        Buffer.from('d'),
        encodeCatalogU64(sub.name.length),
        sub.name,
        encodeCatalogU64(start - sub.start),
      );
      from = sub.at;
    }
    parts.push(dir.bytes.subarray(from, dir.length));
    const table = Buffer.concat(parts);
    this.out(Buffer.concat([encodeCatalogU64(table.length), table]));
    return start;
  }

  private top(): DirInfo {
    if (this.finished) throw new BadRequestError('catalog already finished');
    return this.stack[this.stack.length - 1]!;
  }

  private out(b: Buffer): void {
    this.pos += b.length;
    if (this.write) this.write(b);
    else this.chunks.push(b);
  }
}

const TYPE_FILE = 'f'.charCodeAt(0);

/** A member's name as bytes, checked; `copy` false when it is only read before the call returns. */
function nameBytes(name: Uint8Array | string, copy = true): Buffer {
  const b =
    typeof name === 'string'
      ? Buffer.from(name, 'utf8')
      : copy
        ? Buffer.from(name)
        : Buffer.from(name.buffer, name.byteOffset, name.length);
  if (b.length === 0 || b.length > MAX_NAME || b.includes(0x2f) || b.includes(0))
    throw new BadRequestError(`catalog: invalid name ${JSON.stringify(b.toString())}`);
  return b;
}

// ----- reader ----------------------------------------------------------------------------------

export interface CatalogMatch {
  /** '/'-separated path below the searched directory, with a leading '/'. */
  path: string;
  entry: CatalogEntry;
}

/** Reads a catalog by offsets: listing a directory reads its one block. */
export class CatalogReader {
  private constructor(private readonly src: PxarReadAt) {}

  static open(src: PxarReadAt): CatalogReader {
    return new CatalogReader(src);
  }

  /** The catalog's root directory (its members are the archives). */
  async root(): Promise<CatalogEntry> {
    if (this.src.size < 16) throw catalogCorrupt(0, 'too short for a catalog');
    const magic = await this.readExact(0, 8);
    if (!magic.equals(CATALOG_MAGIC)) throw catalogCorrupt(0, 'wrong magic (not a catalog.pcat1 v1.0)');
    const start = (await this.readExact(this.src.size - 8, 8)).readBigUInt64LE(0);
    if (start < 8n || start >= BigInt(this.src.size - 8))
      throw catalogCorrupt(this.src.size - 8, 'root offset out of range');
    return { name: Buffer.alloc(0), type: 'd', start: Number(start) };
  }

  /** The members of a directory, in the order they were written (name order for pxar trees). */
  async readDir(dir: CatalogEntry): Promise<CatalogEntry[]> {
    const out: CatalogEntry[] = [];
    await this.scan(dir, (entry) => {
      out.push({ ...entry, name: Buffer.from(entry.name) });
      return false;
    });
    return out;
  }

  /** The entry at `path` ('/' is the root, '/root.pxar.didx/etc/hosts' a file), or null. */
  async lookup(path: string | Buffer): Promise<CatalogEntry | null> {
    let cur = await this.root();
    const bytes = typeof path === 'string' ? Buffer.from(path, 'utf8') : path;
    for (const part of bytes.toString('latin1').split('/')) {
      if (part === '' || part === '.') continue;
      if (part === '..') throw new BadRequestError("'..' is not allowed in a catalog path");
      if (cur.type !== 'd') return null;
      const name = Buffer.from(part, 'latin1');
      let next: CatalogEntry | undefined;
      // PBS scans the block too; stop at the name, copying nothing before it
      await this.scan(cur, (entry) => {
        if (!entry.name.equals(name)) return false;
        next = { ...entry, name: Buffer.from(entry.name) };
        return true;
      });
      if (!next) return null;
      cur = next;
    }
    return cur;
  }

  /**
   * Parse a directory's block, calling `visit` per member until it returns true; the member's
   * name is a view into the block, valid during the call only.
   */
  private async scan(dir: CatalogEntry, visit: (entry: CatalogEntry) => boolean): Promise<void> {
    if (dir.type !== 'd' || dir.start === undefined)
      throw new BadRequestError(`'${dir.name.toString()}' is not a directory`);
    const start = dir.start;
    const head = await this.src.read(start, 10);
    const lenCursor = new BlockCursor(head, start);
    const len = lenCursor.u64();
    const blockAt = start + lenCursor.pos;
    if (len < 1 || blockAt + len > this.src.size - 8)
      throw catalogCorrupt(start, `directory block of ${len} bytes out of range`);
    const c = new BlockCursor(await this.readExact(blockAt, len), blockAt);
    const count = c.u64();
    for (let i = 0; i < count; i++) {
      const t = String.fromCharCode(c.byte());
      if (!TYPES.has(t)) throw catalogCorrupt(blockAt + c.pos - 1, `unknown entry type ${JSON.stringify(t)}`);
      const type = t as CatalogEntryType;
      const nameLen = c.u64();
      if (nameLen > MAX_NAME) throw catalogCorrupt(blockAt + c.pos, `name of ${nameLen} bytes`);
      const name = c.bytes(nameLen);
      let entry: CatalogEntry;
      if (type === 'd') {
        const offset = c.u64();
        // children are written before their parent: a child block starts strictly earlier, which
        // also keeps a corrupt catalog from sending a recursive search round in circles
        if (offset < 1 || offset > start - 8)
          throw catalogCorrupt(blockAt + c.pos, `directory offset ${offset} out of range`);
        entry = { name, type, start: start - offset };
      } else if (type === 'f') {
        const size = c.u64();
        entry = { name, type, size, mtime: c.i64() };
      } else entry = { name, type };
      if (visit(entry)) return;
    }
    if (!c.done) throw catalogCorrupt(blockAt + c.pos, 'data after the last entry of a directory block');
  }

  /**
   * Every entry below `dir` whose path matches the glob `pattern` (see compileGlob), depth
   * first in catalog order; directories are searched whether they match or not.
   */
  async *find(dir: CatalogEntry, pattern: string): AsyncGenerator<CatalogMatch> {
    for await (const m of findByGlob(dir, pattern, {
      children: (d) => this.readDir(d),
      name: (e) => e.name,
      isDirectory: (e) => e.type === 'd',
    }))
      yield { path: m.path, entry: m.entry };
  }

  private async readExact(at: number, n: number): Promise<Buffer> {
    const b = await this.src.read(at, n);
    if (b.length !== n) throw catalogCorrupt(at, 'short read');
    return b;
  }
}

/** The catalog's type letter of a pxar entry (what PBS's API reports as an entry's `type`). */
export function catalogTypeOf(entry: PxarEntry): CatalogEntryType {
  switch (entry.kind) {
    case 'directory':
      return 'd';
    case 'file':
      return 'f';
    case 'symlink':
      return 'l';
    case 'hardlink':
      return 'h';
    case 'fifo':
      return 'p';
    case 'socket':
      return 's';
    case 'device':
      return (entry.metadata.stat.mode & MODE.IFMT) === MODE.IFBLK ? 'b' : 'c';
  }
}
