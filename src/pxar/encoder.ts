/**
 * A pxar encoder (format version 1, as proxmox-backup-client writes it). The caller walks a
 * tree and adds its members in byte order of their names; the encoder writes the items, keeps
 * each open directory's goodbye items and writes the directory's GOODBYE when it is finished.
 * Small items are batched; a batch or a file's payload goes to the sink only when the sink
 * accepted the previous one (backpressure). The encoder itself holds one directory level's
 * goodbye items per open directory, never file contents.
 */
import { BadRequestError, ERR_PXAR_FILE_GREW, ERR_PXAR_FILE_SHRANK, ERR_PXAR_INCOMPLETE } from '../errors.js';
import { binaryTreeOrder } from './binary-tree-array.js';
import {
  MAX_FILENAME_LEN,
  MAX_PATH_LEN,
  MODE,
  PXAR,
  checkFilename,
  encodeDevice,
  encodeFilename,
  encodeGoodbye,
  encodeHardlink,
  encodeHeader,
  encodeMetadataItems,
  encodeSymlink,
  fileTypeOf,
  hashFilename,
  type GoodbyeItem,
  type PxarDevice,
  type PxarMetadata,
} from './format.js';
import type { PxarSink, ReusablePiece } from './io.js';

/** Where a regular file's FILENAME item starts: what a later HARDLINK to it refers to. */
export type LinkOffset = number;

interface DirState {
  items: GoodbyeItem[];
  /** Archive offset of the directory's ENTRY. */
  entryOffset: number;
  /** Archive offset of its FILENAME (absent for the root). */
  fileOffset?: number;
  fileHash?: bigint;
  /** The last member's name: members must come in strictly increasing byte order. */
  lastName?: Buffer;
}

const BATCH = 256 * 1024;
/**
 * File contents handed to `addFile` in pieces smaller than this are copied; larger ones go to the
 * sink as they are, which may hold them after `addFile` resolved: memory the caller reuses must
 * not be handed over in larger pieces.
 */
export const PAYLOAD_COPIED_BELOW = BATCH / 4;

/**
 * Told how the archive is laid out, in order, as the encoder writes it: the bytes of items
 * (everything but files' contents) and where a file's contents come. The client's tree cache
 * records an archive's layout from it (client/pxar-backup.ts).
 */
export interface LayoutObserver {
  /** Bytes of items, in archive order. */
  items(b: Buffer): void;
  /** A file's contents of `length` bytes come next. */
  contents(length: number): void;
  /** A directory taken whole from the previous archive comes next (`addWholeDirectory`). */
  reused(piece: ReusablePiece): void;
}

export class PxarEncoder {
  private readonly sink: PxarSink;
  private readonly layout: LayoutObserver | undefined;
  private readonly stack: DirState[] = [];
  private pending: Buffer[] = [];
  private pendingBytes = 0;
  private pos = 0;
  private finished = false;
  /** Set when a write failed or a payload broke its size: the archive cannot be completed. */
  private failed: unknown;

  private constructor(sink: PxarSink, layout: LayoutObserver | undefined) {
    this.sink = sink;
    this.layout = layout;
  }

  /** Start an archive whose root directory has `root` metadata. */
  static async create(sink: PxarSink, root: PxarMetadata, layout?: LayoutObserver): Promise<PxarEncoder> {
    if (fileTypeOf(root.stat.mode) !== MODE.IFDIR) throw new BadRequestError('pxar root must be a directory');
    const enc = new PxarEncoder(sink, layout);
    enc.stack.push({ items: [], entryOffset: 0 });
    await enc.put(encodeMetadataItems(root));
    return enc;
  }

  /** Bytes written so far (the archive offset of the next item). */
  get position(): number {
    return this.pos;
  }

  /** Depth of open directories below the root. */
  get depth(): number {
    return this.stack.length - 1;
  }

  /**
   * A regular file of `size` bytes from `content` (chunks or one buffer). Content that ends
   * early or runs long is refused: the archive's item sizes are already written.
   */
  async addFile(
    meta: PxarMetadata,
    name: Uint8Array | string,
    size: number,
    content: AsyncIterable<Uint8Array> | Uint8Array | ReusablePiece,
  ): Promise<LinkOffset> {
    this.checkType(meta, MODE.IFREG, 'addFile');
    const fname = this.nextName(name);
    const start = this.pos;
    await this.put([encodeFilename(fname), ...encodeMetadataItems(meta), encodeHeader(PXAR.PAYLOAD, size)]);
    this.layout?.contents(size);
    if (isReusablePiece(content)) {
      if (content.length !== size)
        throw new BadRequestError(`reusable piece of ${content.length} bytes for a file of ${size}`);
      if (this.sink.writeReusable) {
        // the consumer takes the piece whole: it reads the bytes itself, or reuses old chunks
        await this.flush();
        this.pos += size;
        await this.write(content);
        this.addItem(fname, start);
        return start;
      }
      content = content.read(0, size);
    }
    let written = 0;
    const chunks = content instanceof Uint8Array ? [content] : content;
    try {
      for await (const chunk of chunks) {
        if (written + chunk.length > size) throw ERR_PXAR_FILE_GREW(fname.toString(), size);
        written += chunk.length;
        await this.putPayload(chunk);
      }
      if (written !== size) throw ERR_PXAR_FILE_SHRANK(fname.toString(), written, size);
    } catch (err) {
      // the PAYLOAD header promised `size` bytes: nothing valid can follow
      this.failed ??= err;
      throw err;
    }
    this.addItem(fname, start);
    return start;
  }

  async addSymlink(
    meta: PxarMetadata,
    name: Uint8Array | string,
    target: Uint8Array | string,
  ): Promise<void> {
    this.checkType(meta, MODE.IFLNK, 'addSymlink');
    const t = bytes(target);
    if (t.length > MAX_PATH_LEN)
      throw new BadRequestError(`symlink target longer than ${MAX_PATH_LEN} bytes`);
    await this.addSimple(name, [...encodeMetadataItems(meta), encodeSymlink(t)]);
  }

  /**
   * A further name of a regular file archived before: `targetPath` is its path relative to the
   * archive root, `targetOffset` what addFile returned for it.
   */
  async addHardlink(
    name: Uint8Array | string,
    targetPath: Uint8Array | string,
    targetOffset: LinkOffset,
  ): Promise<void> {
    if (targetOffset >= this.pos) throw new BadRequestError('a hardlink can only point to an earlier file');
    const t = bytes(targetPath);
    if (t.length > MAX_PATH_LEN)
      throw new BadRequestError(`hardlink target longer than ${MAX_PATH_LEN} bytes`);
    // the stored offset is the distance back from this member's FILENAME to the target's
    await this.addSimple(name, [encodeHardlink(this.pos - targetOffset, t)]);
  }

  async addDevice(meta: PxarMetadata, name: Uint8Array | string, device: PxarDevice): Promise<void> {
    const type = fileTypeOf(meta.stat.mode);
    if (type !== MODE.IFBLK && type !== MODE.IFCHR)
      throw new BadRequestError('addDevice needs a block or character device mode');
    await this.addSimple(name, [...encodeMetadataItems(meta), encodeDevice(device)]);
  }

  async addFifo(meta: PxarMetadata, name: Uint8Array | string): Promise<void> {
    this.checkType(meta, MODE.IFIFO, 'addFifo');
    await this.addSimple(name, encodeMetadataItems(meta));
  }

  async addSocket(meta: PxarMetadata, name: Uint8Array | string): Promise<void> {
    this.checkType(meta, MODE.IFSOCK, 'addSocket');
    await this.addSimple(name, encodeMetadataItems(meta));
  }

  /**
   * A subdirectory whose bytes, from its FILENAME to its GOODBYE, are `piece` of the previous
   * archive (its members unchanged; pxar's offsets inside a directory are relative).
   */
  async addWholeDirectory(name: Uint8Array | string, piece: ReusablePiece): Promise<void> {
    const fname = this.nextName(name);
    const start = this.pos;
    await this.flush();
    this.layout?.reused(piece);
    this.pos += piece.length;
    if (this.sink.writeReusable) await this.write(piece);
    else for await (const b of piece.read(0, piece.length)) await this.write(Buffer.from(b));
    this.addItem(fname, start);
  }

  /** Open a subdirectory: members added next go into it until finishDirectory. */
  async createDirectory(name: Uint8Array | string, meta: PxarMetadata): Promise<void> {
    this.checkType(meta, MODE.IFDIR, 'createDirectory');
    const fname = this.nextName(name);
    const fileOffset = this.pos;
    await this.put([encodeFilename(fname)]);
    const entryOffset = this.pos;
    await this.put(encodeMetadataItems(meta));
    this.stack.push({ items: [], entryOffset, fileOffset, fileHash: hashFilename(fname) });
  }

  /** Close the innermost open subdirectory with its GOODBYE. */
  async finishDirectory(): Promise<void> {
    if (this.stack.length < 2) throw new BadRequestError('no open subdirectory to finish');
    const dir = this.stack.pop()!;
    await this.writeGoodbye(dir);
    this.top().items.push({ hash: dir.fileHash!, offset: dir.fileOffset!, size: this.pos - dir.fileOffset! });
  }

  /** Close the root directory and flush everything to the sink. Returns the archive's size. */
  async finish(): Promise<number> {
    if (this.stack.length !== 1) throw new BadRequestError(`${this.stack.length - 1} directories left open`);
    await this.writeGoodbye(this.stack.pop()!);
    await this.flush();
    this.finished = true;
    return this.pos;
  }

  private async writeGoodbye(dir: DirState): Promise<void> {
    await this.put([encodeGoodbye(dir.items, this.pos, dir.entryOffset, binaryTreeOrder)]);
  }

  private async addSimple(name: Uint8Array | string, items: Buffer[]): Promise<void> {
    const fname = this.nextName(name);
    const start = this.pos;
    await this.put([encodeFilename(fname), ...items]);
    this.addItem(fname, start);
  }

  private addItem(fname: Buffer, start: number): void {
    this.top().items.push({ hash: hashFilename(fname), offset: start, size: this.pos - start });
  }

  private top(): DirState {
    if (this.finished || this.stack.length === 0) throw new BadRequestError('pxar encoder already finished');
    return this.stack[this.stack.length - 1]!;
  }

  private nextName(name: Uint8Array | string): Buffer {
    const fname = bytes(name);
    if (fname.length > MAX_FILENAME_LEN)
      throw new BadRequestError(`file name longer than ${MAX_FILENAME_LEN} bytes`);
    try {
      checkFilename(fname, this.pos);
    } catch {
      throw new BadRequestError(`invalid file name ${JSON.stringify(fname.toString())}`);
    }
    const dir = this.top();
    // decoders and PBS's extractor rely on this order (format/mod.rs: "strictly ordered!")
    if (dir.lastName && Buffer.compare(dir.lastName, fname) >= 0)
      throw new BadRequestError(
        `'${fname.toString()}' added after '${dir.lastName.toString()}': names must increase`,
      );
    dir.lastName = fname;
    return fname;
  }

  private checkType(meta: PxarMetadata, type: number, what: string): void {
    if (fileTypeOf(meta.stat.mode) !== type)
      throw new BadRequestError(
        `${what} needs mode type 0o${type.toString(8)}, got 0o${meta.stat.mode.toString(8)}`,
      );
  }

  private async put(items: Buffer[], contents = false): Promise<void> {
    this.checkUsable();
    for (const b of items) {
      if (!contents) this.layout?.items(b);
      this.pending.push(b);
      this.pendingBytes += b.length;
      this.pos += b.length;
    }
    if (this.pendingBytes >= BATCH) await this.flush();
  }

  /**
   * Payload bytes: callers may reuse their read buffer once this resolves, so a small chunk is
   * copied into the batch and a large one goes to the sink directly, after the batch before it.
   */
  private async putPayload(chunk: Uint8Array): Promise<void> {
    if (chunk.length < PAYLOAD_COPIED_BELOW) {
      await this.put([Buffer.from(chunk)], true);
      return;
    }
    await this.flush();
    this.pos += chunk.length;
    await this.write(Buffer.from(chunk.buffer, chunk.byteOffset, chunk.length));
  }

  private async flush(): Promise<void> {
    if (this.pendingBytes === 0) return;
    const out = this.pending.length === 1 ? this.pending[0]! : Buffer.concat(this.pending, this.pendingBytes);
    this.pending = [];
    this.pendingBytes = 0;
    await this.write(out);
  }

  private async write(b: Buffer | ReusablePiece): Promise<void> {
    this.checkUsable();
    try {
      await (Buffer.isBuffer(b) ? this.sink.write(b) : this.sink.writeReusable!(b));
    } catch (err) {
      this.failed ??= err;
      throw err;
    }
  }

  private checkUsable(): void {
    if (this.failed !== undefined) throw ERR_PXAR_INCOMPLETE.withOptions({ cause: this.failed });
  }
}

function isReusablePiece(c: AsyncIterable<Uint8Array> | Uint8Array | ReusablePiece): c is ReusablePiece {
  return !(c instanceof Uint8Array) && 'oldStart' in c;
}

function bytes(v: Uint8Array | string): Buffer {
  return typeof v === 'string' ? Buffer.from(v, 'utf8') : Buffer.from(v.buffer, v.byteOffset, v.length);
}
