/**
 * File-level restore from pxar archives (PBS `catalog` and `pxar_file_download` in
 * `src/api2/admin/datastore.rs`, reference §2): browse a snapshot's tree and download one file,
 * or a directory as a zip (or `tar=1`: a zstd-compressed tar), without restoring the archive.
 *
 * - `GET …/catalog`: the members of a directory, from the snapshot's `catalog.pcat1.didx`, or
 *   with `archive-name` from the pxar archive itself (its goodbye tables: archives without a
 *   catalog). `filepath` is base64 of the path; `root` or `/` is the top, whose members are the
 *   snapshot's archives (`root.pxar.didx`).
 * - `GET …/pxar-file-download`: `filepath` is base64 of `ARCHIVE/path/in/archive` (as the
 *   catalog listing hands it out), or of the path alone with `archive-name`.
 *
 * Both are `read` operations (browsing is allowed in `read-only` maintenance, refused `offline`),
 * Datastore.Read, or Datastore.Backup on a group the caller owns; encrypted archives are refused.
 * Only the chunks that a lookup touches are read: listing a directory of a huge archive reads a
 * few chunks, never the whole archive.
 */
import { PassThrough, Readable } from 'node:stream';
import { Type, type Static } from 'typebox';
import * as tar from 'tar-stream';
import { ZipFile } from 'yazl';
import { CompressStream } from 'zstd-napi';
import { CATALOG_ARCHIVE_NAME, parseArchiveName, type ArchiveName } from '../../../api-types/archive-name.js';
import type { ArchiveReadAt, BackupDir, ReadonlyDatastore } from '../../../datastore/index.js';
import { BadRequestError, NotFoundError } from '../../../errors.js';
import { defineRoute, type AnyRoute } from '../../../http/route.js';
import {
  CatalogReader,
  MODE,
  PxarAccessor,
  catalogTypeOf,
  type CatalogEntry,
  type PxarFoundEntry,
} from '../../../pxar/index.js';
import { ownerChecked } from './access.js';
import { SnapshotQuery, StoreParams, snapshotOf } from './common.js';
import { sendFromSnapshot } from './snapshot-files.js';

const READ = ['Datastore.Read'];
const BACKUP = ['Datastore.Backup'];
const NS_PATH = '/datastore/{store}/{ns}';

const FilePathSchema = Type.String({ maxLength: 8192, description: 'Base64 encoded path.' });
const ArchiveNameSchema = Type.String({ maxLength: 256, description: 'Backup archive name.' });

/** PBS `ArchiveEntry`: one member of a listed directory. */
const ArchiveEntrySchema = Type.Object({
  filepath: Type.String({ description: 'Base64-encoded full path to the file, including the filename.' }),
  text: Type.String({ description: 'Displayable filename.' }),
  type: Type.String({ description: "Catalog type: d, f, l, h, b, c, p, s ('v' virtual)." }),
  leaf: Type.Boolean({ description: 'Not a directory.' }),
  size: Type.Optional(Type.Integer({ description: 'File size (files only).' })),
  mtime: Type.Optional(Type.Integer({ description: 'Modification time, epoch (files only).' })),
});
type ArchiveEntry = Static<typeof ArchiveEntrySchema>;

/** PBS `decode_path`: `root` and `/` are the top; anything else is base64 of the path bytes. */
function decodePath(filepath: string): Buffer {
  if (filepath === 'root' || filepath === '/') return Buffer.from('/');
  // Node's decoder skips what is not base64; PBS's refuses it: so do we.
  if (!/^[A-Za-z0-9+/]*={0,2}$/.test(filepath) || filepath.length % 4 === 1)
    throw new BadRequestError('filepath: base64 decoding of path failed');
  return Buffer.from(filepath, 'base64');
}

function refuseParent(path: Buffer): void {
  if (path.toString('latin1').split('/').includes('..'))
    throw new BadRequestError("filepath: '..' is not allowed in a path");
}

/** PBS `ArchiveEntry::new`: the path's last component as text; size and mtime for files. */
function archiveEntry(path: Buffer, type: string, file?: { size: number; mtime: number }): ArchiveEntry {
  const slash = path.lastIndexOf(0x2f);
  return {
    filepath: path.toString('base64'),
    text: path.subarray(slash + 1).toString('utf8'),
    type,
    leaf: type !== 'd',
    ...(file && { size: file.size, mtime: file.mtime }),
  };
}

/** The archive a name picks, checked: a pxar archive (or its split metadata half) or the catalog. */
function pxarArchiveName(value: string, param: string): ArchiveName {
  const name = parseArchiveName(value, param);
  if (name.type !== 'dynamic' || !/\.(pxar|mpxar)\.didx$/.test(name.name))
    throw new BadRequestError(`${param}: '${value}' is not a pxar archive`);
  return name;
}

/**
 * A pxar archive of the snapshot for lookups; a split archive (`NAME.mpxar.didx`) with its
 * payload half (`NAME.ppxar.didx`), as PBS's `get_pxar_archive_names`.
 */
function openPxar(ds: ReadonlyDatastore, dir: BackupDir, name: ArchiveName): PxarAccessor {
  const archive: ArchiveReadAt = ds.openSnapshotArchive(dir, name);
  if (!name.name.endsWith('.mpxar.didx')) return PxarAccessor.open(archive);
  const payload = parseArchiveName(name.name.replace(/\.mpxar\.didx$/, '.ppxar.didx'));
  return PxarAccessor.open(archive, { payload: ds.openSnapshotArchive(dir, payload) });
}

/** The catalog's listing of `path` (PBS `CatalogReader::list_dir_contents`). */
async function listCatalog(reader: CatalogReader, path: Buffer): Promise<ArchiveEntry[]> {
  const dir = await reader.lookup(path);
  if (!dir) throw new NotFoundError(`no such file or directory '${path.toString()}' in the catalog`);
  if (dir.type !== 'd') throw new BadRequestError(`'${path.toString()}' is not a directory`);
  // As PBS: the leading '/' is dropped from the listed path, then '/' and the name appended.
  const base = path[0] === 0x2f ? path.subarray(1) : path;
  return (await reader.readDir(dir)).map((e: CatalogEntry) =>
    archiveEntry(
      Buffer.concat([base, Buffer.from('/'), e.name]),
      e.type,
      e.type === 'f' ? { size: e.size!, mtime: e.mtime! } : undefined,
    ),
  );
}

/** A directory's listing read from the pxar archive (PBS `pxar_metadata_catalog_lookup`). */
async function listPxar(accessor: PxarAccessor, path: Buffer): Promise<ArchiveEntry[]> {
  const entry = await accessor.lookup(path);
  if (!entry) throw new NotFoundError(`lookup failed - error opening '${path.toString()}'`);
  if (entry.kind !== 'directory')
    throw new BadRequestError(`expected directory entry, got entry kind '${entry.kind}'`);
  const out: ArchiveEntry[] = [];
  for await (const member of accessor.readDirectory(await accessor.openDirectory(entry))) {
    const type = catalogTypeOf(member);
    out.push(
      archiveEntry(
        member.pathBytes,
        type,
        type === 'f' ? { size: member.size!, mtime: member.metadata.stat.mtimeSecs } : undefined,
      ),
    );
  }
  return out;
}

/** The file an entry stands for: itself, or the file a hard link names (its size and contents). */
function fileOf(accessor: PxarAccessor, entry: PxarFoundEntry): Promise<PxarFoundEntry> {
  return entry.kind === 'hardlink' ? accessor.followHardlink(entry) : Promise.resolve(entry);
}

/** A file's contents, following a hardlink to the file it names. */
async function* fileContents(accessor: PxarAccessor, entry: PxarFoundEntry): AsyncGenerator<Buffer> {
  yield* accessor.contents(await fileOf(accessor, entry));
}

/** Every member below `dir`, depth first in archive order. */
async function* walk(accessor: PxarAccessor, dir: PxarFoundEntry): AsyncGenerator<PxarFoundEntry> {
  for await (const member of accessor.readDirectory(await accessor.openDirectory(dir))) {
    yield member;
    if (member.kind === 'directory') yield* walk(accessor, member);
  }
}

/**
 * An mtime as zip and tar-stream can write it: zip's extended timestamp is an unsigned 32-bit
 * count of seconds (yazl throws, outside any handler, on one before 1970), tar-stream's field
 * has no sign either; times outside are clamped to the nearest one they can hold.
 */
function zipTime(secs: number): Date {
  return new Date(Math.min(Math.max(secs, 0), 0xffffffff) * 1000);
}

/**
 * A directory as a zip (PBS `create_zip`): paths relative to the directory's parent, so the
 * zip holds one top folder; directories, files (deflated) with mode and mtime, hard links as
 * files, symlinks as links; devices, FIFOs and sockets are left out.
 */
function zipDirectory(accessor: PxarAccessor, dir: PxarFoundEntry): Readable {
  const zip = new ZipFile();
  const cut = dir.pathBytes.lastIndexOf(0x2f) + 1;
  const rel = (e: PxarFoundEntry) => e.pathBytes.subarray(cut).toString('utf8');
  const mtime = (e: PxarFoundEntry) => zipTime(e.metadata.stat.mtimeSecs);
  const perms = (e: PxarFoundEntry) => e.metadata.stat.mode & 0o7777;
  const out = new PassThrough();
  (async () => {
    // the archive's root has no name: its members are the zip's top level
    if (rel(dir) !== '')
      zip.addEmptyDirectory(rel(dir), { mtime: mtime(dir), mode: MODE.IFDIR | perms(dir) });
    for await (const e of walk(accessor, dir)) {
      if (e.kind === 'directory')
        zip.addEmptyDirectory(rel(e), { mtime: mtime(e), mode: MODE.IFDIR | perms(e) });
      else if (e.kind === 'file' || e.kind === 'hardlink') {
        // one file at a time: yazl reads a stream when its turn comes, so wait for it
        const data = Readable.from(fileContents(accessor, e));
        const consumed = new Promise<void>((resolve, reject) => {
          data.once('end', resolve);
          data.once('error', reject);
          data.once('close', resolve);
        });
        zip.addReadStream(data, rel(e), { mtime: mtime(e), mode: MODE.IFREG | perms(e) });
        await consumed;
      } else if (e.kind === 'symlink')
        zip.addBuffer(Buffer.from(e.linkTarget!), rel(e), {
          mtime: mtime(e),
          mode: MODE.IFLNK | 0o777,
          compress: false,
        });
    }
    zip.end();
  })().catch((err: unknown) => out.destroy(err as Error));
  zip.outputStream.on('error', (err) => out.destroy(err));
  zip.outputStream.pipe(out);
  return out;
}

/** A directory as tar, compressed with zstd (PBS `create_tar` behind `tar=1`). */
function tarZstDirectory(accessor: PxarAccessor, dir: PxarFoundEntry): Readable {
  const pack = tar.pack();
  const cut = dir.pathBytes.lastIndexOf(0x2f) + 1;
  const header = (e: PxarFoundEntry) => ({
    name: e.pathBytes.subarray(cut).toString('utf8'),
    mode: e.metadata.stat.mode & 0o7777,
    uid: e.metadata.stat.uid,
    gid: e.metadata.stat.gid,
    mtime: zipTime(e.metadata.stat.mtimeSecs),
  });
  const out = new PassThrough();
  (async () => {
    if (header(dir).name !== '') pack.entry({ ...header(dir), type: 'directory' });
    for await (const e of walk(accessor, dir)) {
      const h = header(e);
      if (e.kind === 'directory') pack.entry({ ...h, type: 'directory' });
      else if (e.kind === 'symlink')
        pack.entry({ ...h, type: 'symlink', linkname: e.linkTarget!.toString() });
      else if (e.kind === 'file' || e.kind === 'hardlink') {
        const file = await fileOf(accessor, e);
        const sink = pack.entry({ ...h, type: 'file', size: file.size! });
        for await (const piece of accessor.contents(file))
          if (!sink.write(piece)) await new Promise<void>((r) => sink.once('drain', () => r()));
        await new Promise<void>((resolve, reject) =>
          sink.end((err?: Error | null) => (err ? reject(err) : resolve())),
        );
      }
    }
    pack.finalize();
  })().catch((err: unknown) => pack.destroy(err as Error));
  pack.on('error', (err) => out.destroy(err));
  const zstd = new CompressStream();
  zstd.on('error', (err) => out.destroy(err));
  pack.pipe(zstd).pipe(out);
  return out;
}

export const routes: AnyRoute[] = [
  defineRoute({
    method: 'GET',
    path: '/admin/datastore/:store/catalog',
    params: StoreParams,
    query: Type.Object({
      ...SnapshotQuery,
      filepath: FilePathSchema,
      'archive-name': Type.Optional(ArchiveNameSchema),
    }),
    permission: ownerChecked({ path: NS_PATH, full: READ, owner: BACKUP }),
    returns: Type.Array(ArchiveEntrySchema),
    description:
      "List a directory of a snapshot's file tree (read operation): from the snapshot's catalog " +
      '(catalog.pcat1.didx), or with `archive-name` from that pxar archive. `filepath` is base64 of ' +
      "the path ('root' or '/' for the top, whose members are the pxar archives). " +
      'Datastore.Read, or Datastore.Backup on a group the caller owns.',
    handler: ({ query, access }) => {
      const dir = snapshotOf(query);
      const path = decodePath(query.filepath);
      refuseParent(path);
      const archiveParam = query['archive-name'];
      const name = archiveParam
        ? pxarArchiveName(archiveParam, 'archive-name')
        : parseArchiveName(CATALOG_ARCHIVE_NAME);
      return access.withGroup(dir.group, 'read', { kind: 'catalog', detail: `${dir}/${name.name}` }, (ds) =>
        archiveParam
          ? listPxar(openPxar(ds, dir, name), path)
          : listCatalog(CatalogReader.open(ds.openSnapshotArchive(dir, name)), path),
      );
    },
  }),
  defineRoute({
    method: 'GET',
    path: '/admin/datastore/:store/pxar-file-download',
    params: StoreParams,
    query: Type.Object({
      ...SnapshotQuery,
      filepath: FilePathSchema,
      tar: Type.Optional(Type.Boolean({ description: 'Download a directory as .tar.zst instead of .zip.' })),
      'archive-name': Type.Optional(ArchiveNameSchema),
    }),
    permission: ownerChecked({ path: NS_PATH, full: READ, owner: BACKUP }),
    description:
      'Download one file of a pxar archive, or a directory as zip (`tar=1`: tar.zst), read ' +
      "from the archive's chunks (read operation), application/octet-stream. `filepath` is base64 " +
      'of ARCHIVE/path as the catalog lists it, or of the path within `archive-name`. ' +
      'Datastore.Read, or Datastore.Backup on a group the caller owns.',
    handler: (ctx) => {
      const { query } = ctx;
      let path = decodePath(query.filepath);
      refuseParent(path);
      let archive: ArchiveName;
      if (query['archive-name'] !== undefined)
        archive = pxarArchiveName(query['archive-name'], 'archive-name');
      else {
        // PBS: the first component names the archive, the rest is the path in it
        if (path[0] === 0x2f) path = path.subarray(1);
        const slash = path.indexOf(0x2f);
        const first = (slash < 0 ? path : path.subarray(0, slash)).toString('utf8');
        path = slash < 0 ? Buffer.from('/') : path.subarray(slash);
        archive = pxarArchiveName(first, 'filepath');
      }
      return sendFromSnapshot(
        ctx,
        `${archive.name}${path[0] === 0x2f ? '' : '/'}${path.toString()}`,
        async (ds, dir) => {
          const accessor = openPxar(ds, dir, archive);
          const entry = await accessor.lookup(path);
          if (!entry) throw new NotFoundError(`error opening '${path.toString()}'`);
          switch (entry.kind) {
            case 'file':
            case 'hardlink': {
              const file = await fileOf(accessor, entry);
              return { size: file.size, stream: Readable.from(accessor.contents(file)) };
            }
            case 'directory':
              return { stream: query.tar ? tarZstDirectory(accessor, entry) : zipDirectory(accessor, entry) };
            default:
              throw new BadRequestError(`cannot download file of type '${entry.kind}'`);
          }
        },
      );
    },
  }),
];
