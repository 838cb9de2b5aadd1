/**
 * `stowage-client restore SNAPSHOT ARCHIVE TARGET` — SNAPSHOT is `type/id/time` (RFC 3339, as
 * `snapshots` prints it) or `type/id` for the group's latest finished snapshot. ARCHIVE may omit
 * the `.didx`/`.fidx`/`.blob` suffix (`root.pxar`, `root.tar`, `disk.img`). A pxar or tar archive
 * is extracted into the directory TARGET (created; an existing one must be empty), a pxar archive
 * with its metadata (`--pattern` restores a part of it, as PBS's client); an image or blob is
 * written to the file TARGET, or to stdout when TARGET is `-`.
 */
import { writeFileSync } from 'node:fs';
import type { Command } from 'commander';
import { BadRequestError, ERR_RESTORE_TARGET_EXISTS, NotFoundError } from '../../errors.js';
import { ChunkPool } from '../../client/chunk-pool.js';
import { extractTar } from '../../client/tar-archive.js';
import { PxarDecoder, extractPxar } from '../../pxar/index.js';
import { formatBytes, formatRate, startProgress } from './progress.js';
import { openClientSession } from './session.js';
import { parseSnapshotSpec, withSnapshotReader } from './snapshot-reader.js';

function resolveArchive(files: string[], name: string): string {
  if (files.includes(name)) return name;
  for (const ext of ['.didx', '.fidx', '.blob']) if (files.includes(name + ext)) return name + ext;
  // PBS (`get_pxar_archive_names`): root.pxar also names a split archive's metadata half.
  const split = name.replace(/\.pxar(\.didx)?$/, '.mpxar.didx');
  if (files.includes(split)) return split;
  // Snapshots of Stowage before 0.2 stored root.pxar:DIR trees as tar.
  const tar = name.replace(/\.pxar(\.didx)?$/, '.tar.didx');
  if (files.includes(tar)) return tar;
  throw new NotFoundError(`snapshot has no archive '${name}' (archives: ${files.join(', ')})`);
}

/**
 * Restore creates every file exclusively and never replaces one: a file that is already there
 * is the operator's to move, named as such (exit 3), not a raw `EEXIST` from the filesystem.
 */
async function restoreNeverOverwrites<T>(restore: () => Promise<T>): Promise<T> {
  try {
    return await restore();
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    if (e?.code === 'EEXIST' && typeof e.path === 'string') throw ERR_RESTORE_TARGET_EXISTS(e.path);
    throw err;
  }
}

export function registerRestoreCommand(program: Command): void {
  program
    .command('restore')
    .description(
      'restore an archive of a snapshot: a pxar or tar archive into a directory, an image or blob into a file (- for stdout)',
    )
    .argument('<snapshot>', 'type/id/time, or type/id for the latest')
    .argument('<archive>', 'archive name, e.g. root.pxar, root.tar or disk.img')
    .argument('<target>', 'target directory (pxar, tar) or file (image, blob; - for stdout)')
    .option(
      '--repository <repo>',
      'repository [[user@realm[!token]@]host[:port]:]datastore (env STOWAGE_REPOSITORY)',
    )
    .option('--ns <ns>', 'namespace, e.g. a/b')
    .option(
      '--pattern <glob>',
      "pxar archives: restore only matching paths ('etc/**', '/home/ann/docs'; '!' excludes; repeatable)",
      (v: string, acc: string[]) => [...acc, v],
      [],
    )
    .action(
      async (
        snapshotArg: string,
        archiveArg: string,
        target: string,
        opts: { repository?: string; ns?: string; pattern: string[] },
      ) => {
        const spec = parseSnapshotSpec(snapshotArg);
        const session = openClientSession(opts.repository);
        const pool = new ChunkPool();
        // every archive but a blob is read chunk by chunk through the pool's workers
        if (!archiveArg.endsWith('.blob')) pool.warmUp();
        const started = Date.now();
        try {
          const bytes = await session.withAuth(async (credentials) =>
            restoreNeverOverwrites(() =>
              withSnapshotReader(session, credentials, spec, opts.ns, pool, async (reader) => {
                const manifest = await reader.manifest();
                const archive = resolveArchive(
                  manifest.files.map((f) => f.filename),
                  archiveArg,
                );
                const pxar = /\.m?pxar\.didx$/.test(archive);
                if (opts.pattern.length > 0 && !pxar)
                  throw new BadRequestError(
                    `--pattern selects files of pxar archives; '${archive}' is not one`,
                  );
                if (archive.endsWith('.blob')) {
                  const data = await reader.blob(archive);
                  if (target === '-') process.stdout.write(data);
                  else writeFileSync(target, data, { flag: 'wx', mode: 0o600 });
                  return data.length;
                }
                const entry = manifest.files.find((f) => f.filename === archive)!;
                const progress = startProgress(archive, entry.size);
                try {
                  if (pxar) {
                    if (target === '-')
                      throw new BadRequestError('a pxar archive is restored into a directory, not to stdout');
                    // a split archive's file contents are read from its payload half as needed
                    const payload = archive.endsWith('.mpxar.didx')
                      ? await reader.readAt(archive.replace(/\.mpxar\.didx$/, '.ppxar.didx'))
                      : undefined;
                    // the extractor writes (or copies) each piece of a file before it reads on,
                    // so a chunk the decoder is done with goes back to the workers' memory
                    const decoder = PxarDecoder.fromStream(
                      reader.chunks(archive, (p) => progress.update({ bytes: p.bytes })),
                      { payload, releaseChunk: (c) => reader.releaseChunk(c) },
                    );
                    const res = await extractPxar(decoder, target, {
                      patterns: opts.pattern,
                      onWarning: (m) => process.stderr.write(`warning: ${m}\n`),
                    });
                    return res.bytes;
                  }
                  if (archive.endsWith('.tar.didx')) {
                    if (target === '-')
                      throw new BadRequestError('a tar archive is restored into a directory, not to stdout');
                    const res = await extractTar(
                      reader.chunks(archive, (p) => progress.update({ bytes: p.bytes })),
                      target,
                      { onWarning: (m) => process.stderr.write(`warning: ${m}\n`) },
                    );
                    return res.bytes;
                  }
                  if (target === '-') {
                    let n = 0;
                    for await (const data of reader.chunks(archive, (p) =>
                      progress.update({ bytes: p.bytes }),
                    )) {
                      n += data.length;
                      if (!process.stdout.write(data))
                        await new Promise((r) => process.stdout.once('drain', r));
                    }
                    return n;
                  }
                  return await reader.restoreToFile(archive, target, (p) =>
                    progress.update({ bytes: p.bytes }),
                  );
                } finally {
                  progress.stop();
                }
              }),
            ),
          );
          const ms = Date.now() - started;
          process.stderr.write(
            `restored ${formatBytes(bytes)} in ${(ms / 1000).toFixed(1)} s (${formatRate(bytes, ms)})\n`,
          );
        } finally {
          await pool.close();
        }
      },
    );
}
