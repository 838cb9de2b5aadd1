/**
 * Random access into a pxar archive through its goodbye tables (the crate's `accessor`): a path
 * is found by hashing each component and walking the directory's table as a binary search tree,
 * reading one 24-byte table item per step, so a lookup in a directory of a million members reads
 * about twenty items and one FILENAME per component, never the whole archive. Made for archives
 * behind a chunk index, where every read may fetch a chunk: reads are few and small.
 */
import {
  ERR_PXAR_NO_CONTENTS,
  ERR_PXAR_NOT_A_DIRECTORY,
  ERR_PXAR_NOT_A_HARDLINK,
  ERR_PXAR_PARENT_COMPONENT,
} from '../errors.js';
import { searchBinaryTree } from './binary-tree-array.js';
import { findByGlob, type GlobMatch } from './glob.js';
import { PxarDecoder, decodeHardlink, payloadRefContents, type PxarEntry } from './decoder.js';
import {
  GOODBYE_ITEM_SIZE,
  HEADER_SIZE,
  PXAR,
  checkFilename,
  corrupt,
  decodeGoodbyeItem,
  decodeHeader,
  decodeZeroTerminated,
  hashFilename,
  itemName,
} from './format.js';
import { readExactAt, readRange, sequentialFromReadAt, type PxarReadAt } from './io.js';

/** An open directory: where its ENTRY and its GOODBYE are, and how many members it has. */
export interface PxarDirectory {
  path: Buffer;
  entryOffset: number;
  goodbyeOffset: number;
  /** End of the GOODBYE: the end of the directory. */
  end: number;
  count: number;
}

/** An entry found by a lookup, with the byte range of its data (after its FILENAME). */
export interface PxarFoundEntry extends PxarEntry {
  range: { start: number; end: number };
}

/** Name bytes read with a FILENAME's header (most names are shorter). */
const FILENAME_READ = 240;

/** Bytes read at once when decoding one entry found by a lookup. */
const ENTRY_READ_AHEAD = 512;

/** Items of a goodbye table read in one go while listing (96 KiB): bounded memory per read. */
const LIST_BATCH = 4096;

export class PxarAccessor {
  private rootDir: Promise<PxarDirectory> | undefined;

  private constructor(
    private readonly src: PxarReadAt,
    private readonly payload: PxarReadAt | undefined,
  ) {}

  /** `options.payload`: a split archive's payload stream (`NAME.ppxar`), for file contents. */
  static open(src: PxarReadAt, options: { payload?: PxarReadAt } = {}): PxarAccessor {
    return new PxarAccessor(src, options.payload);
  }

  /** The root directory (its GOODBYE ends the archive). */
  async root(): Promise<PxarDirectory> {
    // every lookup starts here: read the root's table position once per accessor
    this.rootDir ??= this.openDirectoryAtEnd(this.src.size, Buffer.from('/'));
    this.rootDir.catch(() => (this.rootDir = undefined));
    return { ...(await this.rootDir) };
  }

  /** The root's own entry (metadata of the archived directory). */
  async rootEntry(): Promise<PxarFoundEntry> {
    const root = await this.root();
    return this.decodeAt(root.path, root.entryOffset, root.end, undefined);
  }

  /** The directory a directory entry stands for. */
  async openDirectory(entry: PxarFoundEntry): Promise<PxarDirectory> {
    if (entry.kind !== 'directory') throw ERR_PXAR_NOT_A_DIRECTORY(entry.path);
    return this.openDirectoryAtEnd(entry.range.end, entry.pathBytes);
  }

  /**
   * The entry at `path` ('/dir/name', leading '/' optional; '/' is the root), or null when no
   * such member exists. '.' components are ignored, '..' is refused.
   */
  async lookup(path: string | Buffer): Promise<PxarFoundEntry | null> {
    const parts = splitPath(typeof path === 'string' ? Buffer.from(path, 'utf8') : path);
    let entry = await this.rootEntry();
    for (const name of parts) {
      if (entry.kind !== 'directory') return null;
      const found = await this.lookupMember(await this.openDirectory(entry), name);
      if (found === null) return null;
      entry = found;
    }
    return entry;
  }

  /** The member `name` of `dir`, by its name's hash in the goodbye table. */
  async lookupMember(dir: PxarDirectory, name: Buffer): Promise<PxarFoundEntry | null> {
    const hash = hashFilename(name);
    let found: PxarFoundEntry | null = null;
    await searchBinaryTree(
      dir.count,
      async (slot) => {
        const item = await this.goodbyeItem(dir, slot);
        return hash < item.hash ? -1 : hash > item.hash ? 1 : 0;
      },
      async (slot) => {
        // equal hashes: compare the stored name (a collision means another member)
        const member = await this.member(dir, await this.goodbyeItem(dir, slot));
        if (!member.name.equals(name)) return false;
        found = await this.decodeAt(
          joinPath(dir.path, name),
          member.dataStart,
          member.end,
          member.fileOffset,
        );
        return true;
      },
    );
    return found;
  }

  /**
   * The members of `dir` in archive order (byte order of their names), decoded one at a time.
   * Memory: the table's offsets (16 bytes a member), not the members.
   */
  async *readDirectory(dir: PxarDirectory): AsyncGenerator<PxarFoundEntry> {
    const items: { offset: number; size: number }[] = [];
    for (let first = 0; first < dir.count; first += LIST_BATCH) {
      const n = Math.min(LIST_BATCH, dir.count - first);
      const at = dir.goodbyeOffset + HEADER_SIZE + first * GOODBYE_ITEM_SIZE;
      const b = await readExactAt(this.src, at, n * GOODBYE_ITEM_SIZE, 'goodbye table');
      for (let i = 0; i < n; i++) {
        const item = decodeGoodbyeItem(b, i * GOODBYE_ITEM_SIZE, at + i * GOODBYE_ITEM_SIZE);
        items.push({ offset: item.offset, size: item.size });
      }
    }
    // larger distance back from the GOODBYE = earlier in the directory
    items.sort((a, b) => b.offset - a.offset);
    for (const item of items) {
      const member = await this.member(dir, item);
      yield this.decodeAt(joinPath(dir.path, member.name), member.dataStart, member.end, member.fileOffset);
    }
  }

  /**
   * Every entry below `dir` whose path (relative to it) matches the glob `pattern` (glob.ts),
   * read through the goodbye tables: for archives without a catalog (split archives, clients
   * that upload none).
   */
  async *find(dir: PxarDirectory, pattern: string): AsyncGenerator<GlobMatch<PxarFoundEntry>> {
    const root = await this.decodeAt(dir.path, dir.entryOffset, dir.end, undefined);
    const members = async function* (this: PxarAccessor, e: PxarFoundEntry) {
      yield* this.readDirectory(e === root ? dir : await this.openDirectory(e));
    };
    yield* findByGlob<PxarFoundEntry>(root, pattern, {
      children: (e) => members.call(this, e),
      name: (e) => e.pathBytes.subarray(e.pathBytes.lastIndexOf(0x2f) + 1),
      isDirectory: (e) => e.kind === 'directory',
    });
  }

  /** A regular file's contents, in chunks of at most 1 MiB (a split archive's from its payload stream). */
  async *contents(entry: PxarEntry): AsyncGenerator<Buffer> {
    if (entry.kind === 'file' && entry.payloadRef && this.payload) {
      yield* payloadRefContents(this.payload, entry.payloadRef);
      return;
    }
    if (entry.kind !== 'file' || entry.contentOffset === undefined || entry.size === undefined)
      throw ERR_PXAR_NO_CONTENTS(entry.path);
    yield* readRange(this.src, entry.contentOffset, entry.size, `contents of ${entry.path}`);
  }

  /** The regular file a hardlink names (its first archived name). */
  async followHardlink(entry: PxarEntry): Promise<PxarFoundEntry> {
    if (entry.kind !== 'hardlink' || entry.fileOffset === undefined || entry.hardlinkOffset === undefined)
      throw ERR_PXAR_NOT_A_HARDLINK(entry.path);
    const targetOffset = entry.fileOffset - entry.hardlinkOffset;
    const { name, dataStart } = await this.readFilename(targetOffset);
    const path = Buffer.concat([Buffer.from('/'), entry.linkTarget ?? name]);
    // the target's extent is not recorded here: decode it up to its PAYLOAD, which gives its size
    const target = await this.decodeAt(path, dataStart, this.src.size, targetOffset);
    if (target.kind !== 'file')
      throw corrupt(targetOffset, `hardlink ${entry.path} does not point to a regular file`);
    return target;
  }

  private async openDirectoryAtEnd(end: number, path: Buffer): Promise<PxarDirectory> {
    if (end < HEADER_SIZE + GOODBYE_ITEM_SIZE || end > this.src.size)
      throw corrupt(end, `no room for a goodbye table of ${path.toString()}`);
    const tailAt = end - GOODBYE_ITEM_SIZE;
    const tail = decodeGoodbyeItem(
      await readExactAt(this.src, tailAt, GOODBYE_ITEM_SIZE, 'goodbye tail'),
      0,
      tailAt,
    );
    if (tail.hash !== PXAR.GOODBYE_TAIL_MARKER)
      throw corrupt(tailAt, `no goodbye tail marker for ${path.toString()}`);
    const size = tail.size;
    if (
      size > end ||
      size < HEADER_SIZE + GOODBYE_ITEM_SIZE ||
      (size - HEADER_SIZE) % GOODBYE_ITEM_SIZE !== 0
    )
      throw corrupt(tailAt, `goodbye table size ${size} of ${path.toString()} is invalid`);
    const goodbyeOffset = end - size;
    if (tail.offset > goodbyeOffset) throw corrupt(tailAt, 'goodbye tail points before the archive');
    const header = decodeHeader(
      await readExactAt(this.src, goodbyeOffset, HEADER_SIZE, 'GOODBYE'),
      goodbyeOffset,
    );
    if (header.htype !== PXAR.GOODBYE || header.contentSize + HEADER_SIZE !== size)
      throw corrupt(
        goodbyeOffset,
        `expected the GOODBYE of ${path.toString()}, found ${itemName(header.htype)}`,
      );
    return {
      path,
      entryOffset: goodbyeOffset - tail.offset,
      goodbyeOffset,
      end,
      count: (size - HEADER_SIZE) / GOODBYE_ITEM_SIZE - 1,
    };
  }

  private async goodbyeItem(dir: PxarDirectory, slot: number) {
    const at = dir.goodbyeOffset + HEADER_SIZE + slot * GOODBYE_ITEM_SIZE;
    return decodeGoodbyeItem(await readExactAt(this.src, at, GOODBYE_ITEM_SIZE, 'goodbye item'), 0, at);
  }

  /** A goodbye item's member: its name and the extent of its data, checked to lie in `dir`. */
  private async member(dir: PxarDirectory, item: { offset: number; size: number }) {
    const fileOffset = dir.goodbyeOffset - item.offset;
    const end = fileOffset + item.size;
    if (item.offset > dir.goodbyeOffset || fileOffset <= dir.entryOffset || end > dir.goodbyeOffset)
      throw corrupt(dir.goodbyeOffset, `goodbye item of ${dir.path.toString()} points outside the directory`);
    const { name, dataStart } = await this.readFilename(fileOffset);
    if (dataStart > end) throw corrupt(fileOffset, `member ${name.toString()} is shorter than its name`);
    return { name, fileOffset, dataStart, end };
  }

  private async readFilename(at: number): Promise<{ name: Buffer; dataStart: number }> {
    // header and a typical name in one read; a longer name takes a second one
    const first = await this.src.read(
      at,
      Math.min(HEADER_SIZE + FILENAME_READ, Math.max(0, this.src.size - at)),
    );
    const header = decodeHeader(first, at);
    if (header.htype !== PXAR.FILENAME)
      throw corrupt(at, `expected FILENAME, found ${itemName(header.htype)}`);
    const c =
      first.length >= HEADER_SIZE + header.contentSize
        ? first.subarray(HEADER_SIZE, HEADER_SIZE + header.contentSize)
        : await readExactAt(this.src, at + HEADER_SIZE, header.contentSize, 'FILENAME');
    const name = checkFilename(decodeZeroTerminated(c, at, 'FILENAME'), at);
    return { name: Buffer.from(name), dataStart: at + HEADER_SIZE + header.contentSize };
  }

  /** Decode the one entry whose data (ENTRY or HARDLINK onwards) is [start, end). */
  private async decodeAt(
    path: Buffer,
    start: number,
    end: number,
    fileOffset: number | undefined,
  ): Promise<PxarFoundEntry> {
    const range = { start, end };
    const header = decodeHeader(await readExactAt(this.src, start, HEADER_SIZE, 'entry'), start);
    if (header.htype === PXAR.HARDLINK) {
      if (fileOffset === undefined) throw corrupt(start, 'HARDLINK without a name');
      const c = await readExactAt(this.src, start + HEADER_SIZE, header.contentSize, 'HARDLINK');
      return { ...decodeHardlink(path, c, start, fileOffset), range };
    }
    // one entry's ENTRY, metadata and first data header fit in a small window: keep lookups to
    // a few small reads (a chunked archive fetches a chunk per read)
    const input = sequentialFromReadAt(this.src, start, end, ENTRY_READ_AHEAD);
    const decoder = new PxarDecoder(input, { single: true, rootPath: path });
    const entry = await decoder.next();
    if (entry === null) throw corrupt(start, `no entry for ${path.toString()}`);
    if (fileOffset !== undefined) entry.fileOffset = fileOffset;
    return { ...entry, range };
  }
}

function splitPath(path: Buffer): Buffer[] {
  const parts: Buffer[] = [];
  let from = 0;
  for (let i = 0; i <= path.length; i++) {
    if (i === path.length || path[i] === 0x2f) {
      const part = path.subarray(from, i);
      from = i + 1;
      if (part.length === 0 || (part.length === 1 && part[0] === 0x2e)) continue;
      if (part.length === 2 && part[0] === 0x2e && part[1] === 0x2e) throw ERR_PXAR_PARENT_COMPONENT();
      parts.push(part);
    }
  }
  return parts;
}

function joinPath(dir: Buffer, name: Buffer): Buffer {
  return dir.length === 1 && dir[0] === 0x2f
    ? Buffer.concat([dir, name])
    : Buffer.concat([dir, Buffer.from('/'), name]);
}
