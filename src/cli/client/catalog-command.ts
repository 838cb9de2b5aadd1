/**
 * `stowage-client catalog ls SNAPSHOT [PATH]` and `catalog find SNAPSHOT PATTERN`: browse a
 * snapshot's file catalog (`catalog.pcat1.didx`, written with its pxar archives) without
 * restoring anything, as `proxmox-backup-client catalog shell` does. The catalog is read over a
 * reader session, only the chunks a listing touches. Paths start with the archive's name
 * (`/root.pxar.didx/etc/hosts`; `root.pxar/etc` is accepted too), which is what `restore
 * --pattern` and the API's `filepath` take after it.
 */
import type { Command } from 'commander';
import { CATALOG_ARCHIVE_NAME } from '../../api-types/archive-name.js';
import { ChunkPool } from '../../client/chunk-pool.js';
import { BadRequestError, NotFoundError } from '../../errors.js';
import { CatalogReader, type CatalogEntry } from '../../pxar/index.js';
import { formatBytes } from './progress.js';
import { openClientSession } from './session.js';
import { parseSnapshotSpec, withSnapshotReader } from './snapshot-reader.js';

interface CatalogOpts {
  repository?: string;
  ns?: string;
  outputFormat: string;
}

/** A path in the catalog: absolute, its first component an archive (`.didx` may be left out). */
export function catalogPath(arg: string): string {
  const parts = arg.split('/').filter((p) => p !== '' && p !== '.');
  if (parts.includes('..')) throw new BadRequestError(`path '${arg}': '..' is not allowed`);
  if (parts.length > 0 && /\.(pxar|mpxar)$/.test(parts[0]!)) parts[0] += '.didx';
  return '/' + parts.join('/');
}

const iso = (secs: number) => new Date(secs * 1000).toISOString().replace(/\.\d{3}Z$/, 'Z');

function describe(e: CatalogEntry): { type: string; size?: number; mtime?: number } {
  return { type: e.type, ...(e.type === 'f' && { size: e.size, mtime: e.mtime }) };
}

function textRow(e: CatalogEntry, name: string): string {
  const size = e.type === 'f' ? formatBytes(e.size!) : '-';
  const mtime = e.type === 'f' ? iso(e.mtime!) : '-';
  return `${e.type}  ${size.padStart(10)}  ${mtime.padEnd(20)}  ${name}${e.type === 'd' ? '/' : ''}`;
}

/** Open the snapshot's catalog and run `fn` on it. */
async function withCatalog<T>(
  snapshotArg: string,
  opts: CatalogOpts,
  fn: (catalog: CatalogReader) => Promise<T>,
): Promise<T> {
  const spec = parseSnapshotSpec(snapshotArg);
  const session = openClientSession(opts.repository);
  const pool = new ChunkPool();
  try {
    return await session.withAuth((credentials) =>
      withSnapshotReader(session, credentials, spec, opts.ns, pool, async (reader) => {
        const files = (await reader.manifest()).files.map((f) => f.filename);
        if (!files.includes(CATALOG_ARCHIVE_NAME)) {
          throw new NotFoundError(
            `snapshot has no file catalog: it has no pxar archive (archives: ${files.join(', ')})`,
          );
        }
        return fn(CatalogReader.open(await reader.readAt(CATALOG_ARCHIVE_NAME)));
      }),
    );
  } finally {
    await pool.close();
  }
}

export function registerCatalogCommand(program: Command): void {
  const catalog = program
    .command('catalog')
    .description("browse a snapshot's file catalog (pxar archives): ls a directory, find by pattern");
  const common = (cmd: Command) =>
    cmd
      .option(
        '--repository <repo>',
        'repository [[user@realm[!token]@]host[:port]:]datastore (env STOWAGE_REPOSITORY)',
      )
      .option('--ns <ns>', 'namespace, e.g. a/b')
      .option('--output-format <format>', 'text or json', 'text');

  common(
    catalog
      .command('ls')
      .description('list a directory of a snapshot: / lists its archives, /root.pxar/etc a directory in one')
      .argument('<snapshot>', 'type/id/time, or type/id for the latest')
      .argument('[path]', 'directory in the catalog', '/'),
  ).action(async (snapshotArg: string, pathArg: string, opts: CatalogOpts) => {
    const path = catalogPath(pathArg);
    const entries = await withCatalog(snapshotArg, opts, async (reader) => {
      const dir = await reader.lookup(path);
      if (!dir) throw new NotFoundError(`no such file or directory in the catalog: '${path}'`);
      if (dir.type !== 'd') throw new BadRequestError(`'${path}' is not a directory`);
      return reader.readDir(dir);
    });
    if (opts.outputFormat === 'json') {
      process.stdout.write(
        JSON.stringify(entries.map((e) => ({ name: e.name.toString(), ...describe(e) }))) + '\n',
      );
      return;
    }
    for (const e of entries) process.stdout.write(textRow(e, e.name.toString()) + '\n');
  });

  common(
    catalog
      .command('find')
      .description(
        "find entries whose path matches PATTERN ('*.conf', 'etc/**/hosts'; a leading / anchors at the top)",
      )
      .argument('<snapshot>', 'type/id/time, or type/id for the latest')
      .argument('<pattern>', 'glob: * ? [...] **'),
  ).action(async (snapshotArg: string, pattern: string, opts: CatalogOpts) => {
    const found = await withCatalog(snapshotArg, opts, async (reader) => {
      const out: Array<{ path: string; entry: CatalogEntry }> = [];
      for await (const m of reader.find(await reader.root(), pattern)) out.push(m);
      return out;
    });
    if (opts.outputFormat === 'json') {
      process.stdout.write(JSON.stringify(found.map((m) => ({ path: m.path, ...describe(m.entry) }))) + '\n');
      return;
    }
    for (const m of found) process.stdout.write(textRow(m.entry, m.path) + '\n');
    if (found.length === 0) process.stderr.write(`nothing matches '${pattern}'\n`);
  });
}
