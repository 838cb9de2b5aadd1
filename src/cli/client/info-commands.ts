/**
 * `stowage-client login | snapshots [GROUP] | list | status`: the REST side of the client,
 * against PBS's paths (`/admin/datastore/{store}/snapshots`, `/groups`, `/status`).
 */
import type { Command } from 'commander';
import { backupTimeToString } from '../../api-types/names.js';
import { ApiClient } from '../../client/connection.js';
import { login } from './credentials.js';
import { formatBytes } from './progress.js';
import { openClientSession } from './session.js';

const repoOption = [
  '--repository <repo>',
  'repository [[user@realm[!token]@]host[:port]:]datastore (env STOWAGE_REPOSITORY)',
] as const;
const formatOption = ['--output-format <format>', 'text or json', 'text'] as const;

interface ListOpts {
  repository?: string;
  ns?: string;
  outputFormat: string;
}

function table(rows: string[][]): string {
  if (rows.length === 0) return '';
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length)));
  return (
    rows
      .map((r) =>
        r
          .map((c, i) => c.padEnd(widths[i]!))
          .join('  ')
          .trimEnd(),
      )
      .join('\n') + '\n'
  );
}

function fileNames(files: unknown): string[] {
  return Array.isArray(files)
    ? files.map((f) => (typeof f === 'string' ? f : String((f as { filename?: unknown }).filename)))
    : [];
}

export function registerInfoCommands(program: Command): void {
  program
    .command('login')
    .description('log in and keep the ticket for later commands (~/.config/stowage/tickets.json)')
    .option(...repoOption)
    .action(async (opts: { repository?: string }) => {
      const session = openClientSession(opts.repository);
      await login(session.repo, session.policy);
      process.stdout.write(
        `logged in as ${session.repo.authId} on ${session.repo.host}:${session.repo.port}\n`,
      );
    });

  program
    .command('snapshots')
    .description('list snapshots, of one group (type/id) or of all groups')
    .argument('[group]', 'type/id')
    .option(...repoOption)
    .option('--ns <ns>', 'namespace')
    .option(...formatOption)
    .action(async (group: string | undefined, opts: ListOpts) => {
      const session = openClientSession(opts.repository);
      const [type, id] = group ? group.split('/') : [];
      const list = await session.withAuth((creds) =>
        new ApiClient(session.target, session.policy, creds).call<Array<Record<string, unknown>>>(
          'GET',
          `/admin/datastore/${session.repo.store}/snapshots`,
          { ns: opts.ns, 'backup-type': type, 'backup-id': id },
        ),
      );
      list.sort((a, b) => Number(a['backup-time']) - Number(b['backup-time']));
      if (opts.outputFormat === 'json') {
        process.stdout.write(JSON.stringify(list) + '\n');
        return;
      }
      const rows = [['snapshot', 'size', 'files']];
      for (const s of list) {
        const files = fileNames(s.files);
        rows.push([
          `${String(s['backup-type'])}/${String(s['backup-id'])}/${backupTimeToString(Number(s['backup-time']))}`,
          typeof s.size === 'number' ? formatBytes(s.size) : '-',
          files.filter((f) => f !== 'index.json.blob').join(' ') +
            (files.includes('index.json.blob') ? '' : ' (unfinished)'),
        ]);
      }
      process.stdout.write(table(rows));
    });

  program
    .command('list')
    .description('list backup groups')
    .option(...repoOption)
    .option('--ns <ns>', 'namespace')
    .option(...formatOption)
    .action(async (opts: ListOpts) => {
      const session = openClientSession(opts.repository);
      const list = await session.withAuth((creds) =>
        new ApiClient(session.target, session.policy, creds).call<Array<Record<string, unknown>>>(
          'GET',
          `/admin/datastore/${session.repo.store}/groups`,
          { ns: opts.ns },
        ),
      );
      if (opts.outputFormat === 'json') {
        process.stdout.write(JSON.stringify(list) + '\n');
        return;
      }
      const rows = [['group', 'last snapshot', 'count', 'owner', 'files']];
      for (const g of list) {
        rows.push([
          `${String(g['backup-type'])}/${String(g['backup-id'])}`,
          backupTimeToString(Number(g['last-backup'])),
          String(g['backup-count']),
          String(g.owner ?? '-'),
          fileNames(g.files).join(' '),
        ]);
      }
      process.stdout.write(table(rows));
    });

  program
    .command('status')
    .description('show the datastore usage')
    .option(...repoOption)
    .option(...formatOption)
    .action(async (opts: ListOpts) => {
      const session = openClientSession(opts.repository);
      const st = await session.withAuth((creds) =>
        new ApiClient(session.target, session.policy, creds).call<{
          total: number;
          used: number;
          avail: number;
        }>('GET', `/admin/datastore/${session.repo.store}/status`),
      );
      if (opts.outputFormat === 'json') {
        process.stdout.write(JSON.stringify(st) + '\n');
        return;
      }
      const pct = st.total > 0 ? ((st.used * 100) / st.total).toFixed(2) : '0.00';
      process.stdout.write(
        `datastore ${session.repo.store}: used ${formatBytes(st.used)} of ${formatBytes(st.total)} (${pct}%), available ${formatBytes(st.avail)}\n`,
      );
    });
}
