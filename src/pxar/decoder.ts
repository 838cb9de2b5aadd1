/**
 * A sequential pxar decoder: yields every entry of an archive (or of one entry's byte range) in
 * archive order, with its path, metadata and kind-specific data. A regular file's contents are
 * read with `contents()` right after the file was yielded; contents not read are skipped. Any
 * inconsistency is a CorruptDataError naming the offset; item sizes are checked against the
 * format's limits before anything is allocated, so corrupt input never leads to a huge buffer.
 */
import { ERR_PXAR_CONTENTS_OUT_OF_ORDER } from '../errors.js';
import {
  HEADER_SIZE,
  METADATA_ITEMS,
  MODE,
  PXAR,
  applyMetadataItem,
  checkFilename,
  corrupt,
  decodeHeader,
  decodeStat,
  decodeZeroTerminated,
  emptyAcl,
  fileTypeOf,
  itemName,
  type ItemHeader,
  type PxarDevice,
  type PxarMetadata,
} from './format.js';
import {
  readExactAt,
  readRange,
  IO_CHUNK,
  sequentialFromReadAt,
  sequentialFromStream,
  type PxarReadAt,
  type SequentialReader,
} from './io.js';

export type PxarEntryKind = 'directory' | 'file' | 'symlink' | 'hardlink' | 'device' | 'fifo' | 'socket';

export interface PxarEntry {
  /** '/' for the root, '/dir/name' below it (bytes decoded as UTF-8; see pathBytes). */
  path: string;
  /** The exact path bytes (names need not be UTF-8). */
  pathBytes: Buffer;
  kind: PxarEntryKind;
  /** A hardlink carries none of its own: it has the target's. */
  metadata: PxarMetadata;
  /** Archive offset of the member's FILENAME item (undefined for the root). */
  fileOffset?: number;
  /** Regular file: size in bytes, and where its contents start in the archive (format v1). */
  size?: number;
  contentOffset?: number;
  /** Format v2: the contents live in the payload stream at this offset (its PAYLOAD header). */
  payloadRef?: { offset: number; size: number };
  /** Symlink target, or a hardlink's target path relative to the archive root. */
  linkTarget?: Buffer;
  /** Hardlink: distance back from this member's FILENAME to the target's FILENAME. */
  hardlinkOffset?: number;
  device?: PxarDevice;
}

type Pending =
  | { kind: 'none' }
  | { kind: 'payload'; left: number }
  | { kind: 'payload-ref'; ref: { offset: number; size: number } }
  | { kind: 'header'; header: ItemHeader; at: number };

export interface DecoderOptions {
  /**
   * Decode a single member's range (as the accessor hands out): the input ends after the
   * member, so a FIFO, socket or directory entry ends at the end of input.
   */
  single?: boolean;
  /** Path to report for the first entry (default '/'). */
  rootPath?: Buffer;
  /**
   * Format version 2: the payload stream (`NAME.ppxar`) that PAYLOAD_REF items point into, so
   * that `contents()` can read a split archive's files.
   */
  payload?: PxarReadAt;
}

export interface StreamDecoderOptions extends DecoderOptions {
  /**
   * Given each chunk of the stream once nothing of the decoder reads it any more (see
   * `sequentialFromStream`); a file's `contents()` are views of the chunks, valid until the
   * decoder is next asked for anything.
   */
  releaseChunk?: (chunk: Buffer) => void;
}

export class PxarDecoder implements AsyncIterable<PxarEntry> {
  private readonly input: SequentialReader;
  private readonly single: boolean;
  private readonly rootPath: Buffer;
  private readonly payload: PxarReadAt | undefined;
  /** Path of each open directory; empty before the root and after its GOODBYE. */
  private readonly dirs: Buffer[] = [];
  private pending: Pending = { kind: 'none' };
  private started = false;
  private done = false;
  /** Format version from a FORMAT_VERSION item (1 when absent). */
  version = 1;

  constructor(input: SequentialReader, options: DecoderOptions = {}) {
    this.input = input;
    this.single = options.single ?? false;
    this.rootPath = options.rootPath ?? Buffer.from('/');
    this.payload = options.payload;
  }

  static fromReadAt(src: PxarReadAt, options?: DecoderOptions): PxarDecoder {
    return new PxarDecoder(sequentialFromReadAt(src), options);
  }

  static fromStream(stream: AsyncIterable<Uint8Array>, options?: StreamDecoderOptions): PxarDecoder {
    return new PxarDecoder(sequentialFromStream(stream, { releaseChunk: options?.releaseChunk }), options);
  }

  async *[Symbol.asyncIterator](): AsyncIterator<PxarEntry> {
    for (;;) {
      const e = await this.next();
      if (e === null) return;
      yield e;
    }
  }

  /** The next entry, or null after the root's GOODBYE. */
  async next(): Promise<PxarEntry | null> {
    if (this.done) return null;
    if (!this.started) {
      this.started = true;
      return this.readRoot();
    }
    await this.skipPayload();
    for (;;) {
      const h = await this.takeHeader();
      if (h === null) {
        if (this.single && this.dirs.length <= 1) return this.end();
        throw corrupt(this.input.position, 'archive ends inside a directory');
      }
      if (h.header.htype === PXAR.FILENAME) return this.readMember(h.header, h.at);
      if (h.header.htype === PXAR.GOODBYE) {
        await this.input.skip(h.header.contentSize);
        this.dirs.pop();
        if (this.dirs.length === 0) {
          if (!this.single && (await this.input.readOrEof(1)) !== null)
            throw corrupt(this.input.position - 1, 'data after the root directory');
          return this.end();
        }
        continue;
      }
      throw corrupt(h.at, `expected FILENAME or GOODBYE, found ${itemName(h.header.htype)}`);
    }
  }

  /**
   * The contents of the regular file last yielded, in chunks of at most 1 MiB. Only valid before
   * the next call to next(); a v2 payload reference is read from the `payload` option.
   */
  async *contents(): AsyncGenerator<Buffer> {
    if (this.pending.kind === 'payload-ref') {
      const ref = this.pending.ref;
      this.pending = { kind: 'none' };
      yield* payloadRefContents(this.payload!, ref);
      return;
    }
    if (this.pending.kind !== 'payload') throw ERR_PXAR_CONTENTS_OUT_OF_ORDER();
    while (this.pending.kind === 'payload' && this.pending.left > 0) {
      const b = await this.input.readSome(Math.min(IO_CHUNK, this.pending.left));
      this.pending.left -= b.length;
      yield b;
    }
  }

  private end(): null {
    this.done = true;
    return null;
  }

  private async readRoot(): Promise<PxarEntry | null> {
    let h = await this.readHeader();
    if (h === null) throw corrupt(0, 'empty archive');
    if (h.header.htype === PXAR.FORMAT_VERSION) {
      const v = (await this.input.read(8)).readBigUInt64LE(0);
      if (v !== 1n && v !== 2n) throw corrupt(h.at, `unknown pxar format version ${v}`);
      this.version = Number(v);
      h = await this.readHeader();
      if (h !== null && h.header.htype === PXAR.PRELUDE) {
        await this.input.skip(h.header.contentSize);
        h = await this.readHeader();
      }
      if (h === null) throw corrupt(this.input.position, 'archive has no root entry');
    }
    const root = await this.readEntry(h.header, h.at, this.rootPath, undefined);
    if (!this.single && root.kind !== 'directory') throw corrupt(h.at, 'the root entry is not a directory');
    return root;
  }

  private async readMember(header: ItemHeader, at: number): Promise<PxarEntry> {
    const name = checkFilename(
      decodeZeroTerminated(await this.input.read(header.contentSize), at, 'FILENAME'),
      at,
    );
    const parent = this.dirs[this.dirs.length - 1];
    // a single member's range may hold a file followed by stray items: no directory to be in
    if (parent === undefined) throw corrupt(at, 'FILENAME outside a directory');
    const path =
      parent.length === 1 && parent[0] === 0x2f
        ? Buffer.concat([parent, name])
        : Buffer.concat([parent, Buffer.from('/'), name]);
    const next = await this.readHeader();
    if (next === null)
      throw corrupt(this.input.position, `archive ends after the name of ${path.toString()}`);
    if (next.header.htype === PXAR.HARDLINK)
      return decodeHardlink(path, await this.input.read(next.header.contentSize), next.at, at);
    return this.readEntry(next.header, next.at, path, at);
  }

  /** ENTRY, its metadata items, then what says which kind of entry this is. */
  private async readEntry(
    header: ItemHeader,
    at: number,
    path: Buffer,
    fileOffset: number | undefined,
  ): Promise<PxarEntry> {
    if (header.htype !== PXAR.ENTRY && header.htype !== PXAR.ENTRY_V1)
      throw corrupt(at, `expected ENTRY, found ${itemName(header.htype)}`);
    const meta = metadataWith(decodeStat(header.htype, await this.input.read(header.contentSize), at));
    const entry = (kind: PxarEntryKind): PxarEntry => {
      const e = base(path, kind, meta);
      if (fileOffset !== undefined) e.fileOffset = fileOffset;
      return e;
    };
    const type = fileTypeOf(meta.stat.mode);
    for (;;) {
      const h = await this.readHeader();
      if (h === null) {
        // only a member decoded on its own range may end here (no following FILENAME/GOODBYE)
        if (!this.single) throw corrupt(this.input.position, `archive ends inside ${path.toString()}`);
        if (type === MODE.IFDIR) this.dirs.push(path);
        else if (type !== MODE.IFIFO && type !== MODE.IFSOCK)
          throw corrupt(this.input.position, `${path.toString()} ends without its data`);
        return entry(kindOfSpecial(type));
      }
      const { header: ih, at: iat } = h;
      if (METADATA_ITEMS.has(ih.htype)) {
        applyMetadataItem(meta, ih.htype, await this.input.read(ih.contentSize), iat);
        continue;
      }
      switch (ih.htype) {
        case PXAR.PAYLOAD:
          expectType(type, MODE.IFREG, ih, iat);
          this.pending = { kind: 'payload', left: ih.contentSize };
          return { ...entry('file'), size: ih.contentSize, contentOffset: this.input.position };
        case PXAR.PAYLOAD_REF: {
          expectType(type, MODE.IFREG, ih, iat);
          const c = await this.input.read(16);
          const ref = { offset: safe(c.readBigUInt64LE(0), iat), size: safe(c.readBigUInt64LE(8), iat) };
          if (this.payload) this.pending = { kind: 'payload-ref', ref };
          return { ...entry('file'), size: ref.size, payloadRef: ref };
        }
        case PXAR.SYMLINK: {
          expectType(type, MODE.IFLNK, ih, iat);
          const target = decodeZeroTerminated(await this.input.read(ih.contentSize), iat, 'SYMLINK');
          return { ...entry('symlink'), linkTarget: target };
        }
        case PXAR.DEVICE: {
          if (type !== MODE.IFBLK && type !== MODE.IFCHR)
            throw corrupt(iat, 'DEVICE for an entry that is no device');
          const c = await this.input.read(16);
          const device = { major: safe(c.readBigUInt64LE(0), iat), minor: safe(c.readBigUInt64LE(8), iat) };
          return { ...entry('device'), device };
        }
        case PXAR.FILENAME:
        case PXAR.GOODBYE:
          // the entry had no data item: a directory's first member or its end, or the next
          // member after a FIFO or socket
          if (type !== MODE.IFDIR && type !== MODE.IFIFO && type !== MODE.IFSOCK)
            throw corrupt(iat, `${path.toString()} (mode 0o${meta.stat.mode.toString(8)}) has no data item`);
          if (type === MODE.IFDIR) this.dirs.push(path);
          else if (this.dirs.length === 0) throw corrupt(iat, 'the root entry is not a directory');
          this.pending = { kind: 'header', header: ih, at: iat };
          return entry(kindOfSpecial(type));
        default:
          throw corrupt(iat, `unexpected ${itemName(ih.htype)} in the entry of ${path.toString()}`);
      }
    }
  }

  private async skipPayload(): Promise<void> {
    if (this.pending.kind === 'payload') await this.input.skip(this.pending.left);
    if (this.pending.kind === 'payload' || this.pending.kind === 'payload-ref')
      this.pending = { kind: 'none' };
  }

  private async takeHeader(): Promise<{ header: ItemHeader; at: number } | null> {
    if (this.pending.kind === 'header') {
      const h = { header: this.pending.header, at: this.pending.at };
      this.pending = { kind: 'none' };
      return h;
    }
    return this.readHeader();
  }

  private async readHeader(): Promise<{ header: ItemHeader; at: number } | null> {
    const at = this.input.position;
    const b = await this.input.readOrEof(HEADER_SIZE);
    if (b === null) return null;
    return { header: decodeHeader(b, at), at };
  }
}

/**
 * A split archive's file contents: `ref.offset` is where its PAYLOAD item starts in the payload
 * stream; the item's size must be the referenced size (the crate's `check_payload_header_and_size`).
 */
export async function* payloadRefContents(
  payload: PxarReadAt,
  ref: { offset: number; size: number },
): AsyncGenerator<Buffer> {
  const header = decodeHeader(await readExactAt(payload, ref.offset, HEADER_SIZE, 'PAYLOAD'), ref.offset);
  if (header.htype !== PXAR.PAYLOAD)
    throw corrupt(ref.offset, `payload stream has ${itemName(header.htype)}, not PAYLOAD`);
  if (header.contentSize !== ref.size)
    throw corrupt(ref.offset, `PAYLOAD of ${header.contentSize} bytes where ${ref.size} are referenced`);
  yield* readRange(payload, ref.offset + HEADER_SIZE, ref.size, 'payload');
}

/**
 * A HARDLINK member (it has no ENTRY): `c` is the item's content, `fileOffset` where the
 * member's FILENAME starts; the stored offset leads back from there to the target's FILENAME.
 */
export function decodeHardlink(path: Buffer, c: Buffer, at: number, fileOffset: number): PxarEntry {
  if (c.length <= 8) throw corrupt(at, 'HARDLINK too small');
  const offset = c.readBigUInt64LE(0);
  if (offset === 0n || offset > BigInt(fileOffset))
    throw corrupt(at, 'HARDLINK points outside the earlier archive');
  return {
    ...base(path, 'hardlink', metadataWith(zeroStat())),
    fileOffset,
    hardlinkOffset: Number(offset),
    linkTarget: decodeZeroTerminated(c.subarray(8), at, 'HARDLINK target'),
  };
}

function base(pathBytes: Buffer, kind: PxarEntryKind, metadata: PxarMetadata): PxarEntry {
  return { path: pathBytes.toString('utf8'), pathBytes, kind, metadata };
}

function kindOfSpecial(type: number): PxarEntryKind {
  return type === MODE.IFIFO ? 'fifo' : type === MODE.IFSOCK ? 'socket' : 'directory';
}

function expectType(type: number, want: number, h: ItemHeader, at: number): void {
  if (type !== want)
    throw corrupt(at, `${itemName(h.htype)} for an entry of mode type 0o${type.toString(8)}`);
}

function safe(v: bigint, at: number): number {
  if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw corrupt(at, `value ${v} out of range`);
  return Number(v);
}

function zeroStat() {
  return { mode: 0, flags: 0n, uid: 0, gid: 0, mtimeSecs: 0, mtimeNanos: 0 };
}

function metadataWith(stat: PxarMetadata['stat']): PxarMetadata {
  return { stat, xattrs: [], acl: emptyAcl() };
}
