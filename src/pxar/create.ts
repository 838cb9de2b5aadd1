/**
 * Archive a directory tree on disk as pxar (what `proxmox-backup-client backup NAME.pxar:DIR`
 * does): members in byte order of their names, hardlinked files once and then as HARDLINK
 * items, symlinks, devices, FIFOs and sockets as entries, and optionally a catalog of the tree.
 *
 * Node has no API for extended attributes, POSIX ACLs, file capabilities or chattr flags, so
 * these are not read from the disk (the format layer encodes and decodes them all); the flags
 * field is 0. Members are read with lstat: symlinks are archived, never followed.
 */
import { lstat, open, readdir, readlink, type FileHandle } from 'node:fs/promises';
import type { BigIntStats } from 'node:fs';
import { StowageError } from '../errors.js';
import { PxarEncoder, type LinkOffset } from './encoder.js';
import { MODE, deviceFromDevT, metadataOf, type PxarMetadata, type PxarStat } from './format.js';
import { IO_CHUNK, type PxarSink } from './io.js';

/** What records the tree as it is archived (PBS's `BackupCatalogWriter`; see catalog.ts). */
export interface TreeCatalog {
  startDirectory(name: Uint8Array | string): void;
  endDirectory(): void;
  addFile(name: Uint8Array | string, size: number, mtimeSecs: number): void;
  addSymlink(name: Uint8Array | string): void;
  addHardlink(name: Uint8Array | string): void;
  addBlockDevice(name: Uint8Array | string): void;
  addCharDevice(name: Uint8Array | string): void;
  addFifo(name: Uint8Array | string): void;
  addSocket(name: Uint8Array | string): void;
}

export interface CreateArchiveOptions {
  /** Record the tree in this catalog, under a directory named `catalogName` (PBS: `NAME.pxar.didx`). */
  catalog?: TreeCatalog;
  catalogName?: string;
  /** Called after each member is archived (progress), with its path relative to the root. */
  onEntry?: (relPath: Buffer, stats: BigIntStats) => void;
}

export interface CreateArchiveResult {
  size: number;
  entries: number;
}

/** Write `root` (a directory) as a pxar archive to `sink`. */
export async function createArchive(
  root: string,
  sink: PxarSink,
  options: CreateArchiveOptions = {},
): Promise<CreateArchiveResult> {
  const rootStats = await lstat(root, { bigint: true });
  if (!rootStats.isDirectory()) throw new StowageError('BAD_REQUEST', `'${root}' is not a directory`);
  const encoder = await PxarEncoder.create(sink, metadataFromStats(rootStats));
  const walker = new TreeWalker(encoder, options);
  if (options.catalog) options.catalog.startDirectory(options.catalogName ?? 'root.pxar.didx');
  await walker.walkDirectory(Buffer.from(root), Buffer.alloc(0));
  if (options.catalog) options.catalog.endDirectory();
  const size = await encoder.finish();
  return { size, entries: walker.entries };
}

/** PBS's mode, owner and mtime of a member from its lstat (with nanoseconds). */
export function metadataFromStats(st: BigIntStats): PxarMetadata {
  return metadataOf(statFromStats(st));
}

export function statFromStats(st: BigIntStats): PxarStat {
  // floor division, so that times before 1970 keep 0 <= nanos < 1e9 (StatxTimestamp)
  let secs = st.mtimeNs / 1_000_000_000n;
  let nanos = st.mtimeNs % 1_000_000_000n;
  if (nanos < 0n) {
    secs -= 1n;
    nanos += 1_000_000_000n;
  }
  return {
    mode: Number(st.mode),
    flags: 0n,
    uid: Number(st.uid),
    gid: Number(st.gid),
    mtimeSecs: Number(secs),
    mtimeNanos: Number(nanos),
  };
}

class TreeWalker {
  entries = 0;
  private readonly hardlinks = new Map<string, { path: Buffer; offset: LinkOffset }>();

  constructor(
    private readonly encoder: PxarEncoder,
    private readonly options: CreateArchiveOptions,
  ) {}

  async walkDirectory(dir: Buffer, rel: Buffer): Promise<void> {
    // names as bytes: they need not be UTF-8, and the archive orders them bytewise
    const names = await readdir(dir, { encoding: 'buffer' });
    names.sort(Buffer.compare);
    for (const name of names) {
      const full = Buffer.concat([dir, Buffer.from('/'), name]);
      const relPath = rel.length === 0 ? name : Buffer.concat([rel, Buffer.from('/'), name]);
      await this.addMember(full, relPath, name);
    }
  }

  private async addMember(full: Buffer, rel: Buffer, name: Buffer): Promise<void> {
    const st = await lstat(full, { bigint: true });
    const meta = metadataFromStats(st);
    const catalog = this.options.catalog;
    const type = Number(st.mode) & MODE.IFMT;
    switch (type) {
      case MODE.IFREG: {
        const key = `${st.dev}:${st.ino}`;
        const earlier = st.nlink > 1n ? this.hardlinks.get(key) : undefined;
        if (earlier) {
          await this.encoder.addHardlink(name, earlier.path, earlier.offset);
          catalog?.addHardlink(name);
          break;
        }
        const offset = await this.addRegularFile(full, name, meta, Number(st.size));
        if (st.nlink > 1n) this.hardlinks.set(key, { path: rel, offset });
        catalog?.addFile(name, Number(st.size), meta.stat.mtimeSecs);
        break;
      }
      case MODE.IFDIR:
        catalog?.startDirectory(name);
        await this.encoder.createDirectory(name, meta);
        await this.walkDirectory(full, rel);
        await this.encoder.finishDirectory();
        catalog?.endDirectory();
        break;
      case MODE.IFLNK:
        await this.encoder.addSymlink(meta, name, await readlink(full, { encoding: 'buffer' }));
        catalog?.addSymlink(name);
        break;
      case MODE.IFBLK:
      case MODE.IFCHR:
        await this.encoder.addDevice(meta, name, deviceFromDevT(st.rdev));
        if (type === MODE.IFBLK) catalog?.addBlockDevice(name);
        else catalog?.addCharDevice(name);
        break;
      case MODE.IFIFO:
        await this.encoder.addFifo(meta, name);
        catalog?.addFifo(name);
        break;
      case MODE.IFSOCK:
        await this.encoder.addSocket(meta, name);
        catalog?.addSocket(name);
        break;
      default:
        throw new StowageError('UNSUPPORTED', `'${full.toString()}' has an unknown file type`);
    }
    this.entries++;
    this.options.onEntry?.(rel, st);
  }

  private async addRegularFile(
    full: Buffer,
    name: Buffer,
    meta: PxarMetadata,
    size: number,
  ): Promise<LinkOffset> {
    let fh: FileHandle | undefined;
    try {
      fh = await open(full, 'r');
      return await this.encoder.addFile(meta, name, size, readUpTo(fh, size));
    } finally {
      await fh?.close();
    }
  }
}

/**
 * The first `size` bytes of a file (the size lstat saw; the archive's item sizes are fixed by
 * it): a file that grew is cut at that size, one that shrank fails the encode.
 */
async function* readUpTo(fh: FileHandle, size: number): AsyncGenerator<Buffer> {
  let done = 0;
  while (done < size) {
    // a fresh buffer per chunk: the encoder's sink may still hold the previous one
    const b = Buffer.allocUnsafe(Math.min(IO_CHUNK, size - done));
    const { bytesRead } = await fh.read(b, 0, b.length, done);
    if (bytesRead === 0) return;
    done += bytesRead;
    yield b.subarray(0, bytesRead);
  }
}
