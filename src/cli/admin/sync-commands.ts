/**
 * `stowage pull|push` (sync now, following the task as `stowage gc` does) and
 * `stowage sync-job list|show|create|update|remove|run` (`config/sync`, `admin/sync`), as PBS's
 * `proxmox-backup-manager pull` and `sync-job` commands. Docs: docs/sync.md.
 */
import type { Command } from 'commander';
import type { SyncJobConfig } from '../../config/job-config.js';
import { adminClient, type GlobalOptions } from './admin-connection.js';
import { printRecord, printRows, type OutputFormat } from './output.js';
import { followTask } from './task-wait.js';

const globals = (cmd: Command) => cmd.optsWithGlobals() as GlobalOptions & { outputFormat: OutputFormat };
const jobPath = (id?: string) =>
  id === undefined ? '/config/sync' : `/config/sync/${encodeURIComponent(id)}`;

interface SyncOptions {
  ns?: string;
  remoteNs?: string;
  removeVanished?: boolean;
  maxDepth?: number;
  groupFilter?: string[];
  transferLast?: number;
  rateIn?: string;
  burstIn?: string;
  rateOut?: string;
  burstOut?: string;
  verifiedOnly?: boolean;
  encryptedOnly?: boolean;
  resyncCorrupt?: boolean;
  workerThreads?: number;
}

const withSyncOptions = (cmd: Command): Command =>
  cmd
    .option('--ns <namespace>', 'the local namespace')
    .option('--remote-ns <namespace>', "the remote's namespace")
    .option('--remove-vanished', 'delete what the source no longer has')
    .option('--max-depth <n>', 'namespace levels below to sync', (v) => Number(v))
    .option('--group-filter <filter...>', 'type:TYPE, group:TYPE/ID or regex:RE, each optionally exclude:…')
    .option('--transfer-last <n>', 'only the newest N snapshots of each group', (v) => Number(v))
    .option('--rate-in <size>', 'most bytes per second downloaded, e.g. 10MiB (pull)')
    .option('--burst-in <size>', 'burst of downloads (pull)')
    .option('--rate-out <size>', 'most bytes per second uploaded (push)')
    .option('--burst-out <size>', 'burst of uploads (push)')
    .option('--verified-only', 'only snapshots whose last verification succeeded')
    .option('--encrypted-only', 'only snapshots whose every archive is encrypted')
    .option('--worker-threads <n>', 'groups synced at once (1 to 32, default 1)', (v) => Number(v));

/** `--resync-corrupt`: pulls only (the server refuses it for a push). */
const withResyncCorrupt = (cmd: Command): Command =>
  cmd.option('--resync-corrupt', 'sync again the snapshots whose last verification failed here (pull)');

/** The API's names; unset options are left out (the JSON body drops undefined). */
function syncFields(o: SyncOptions): Record<string, unknown> {
  return {
    ns: o.ns,
    'remote-ns': o.remoteNs,
    'remove-vanished': o.removeVanished,
    'max-depth': o.maxDepth,
    'group-filter': o.groupFilter,
    'transfer-last': o.transferLast,
    'rate-in': o.rateIn,
    'burst-in': o.burstIn,
    'rate-out': o.rateOut,
    'burst-out': o.burstOut,
    'verified-only': o.verifiedOnly,
    'encrypted-only': o.encryptedOnly,
    'resync-corrupt': o.resyncCorrupt,
    'worker-threads': o.workerThreads,
  };
}

export function registerSyncCommands(program: Command): void {
  withResyncCorrupt(
    withSyncOptions(
      program
        .command('pull <remote> <remote-store> <store>')
        .description("sync a remote's datastore into a local one now ('-' as remote: a local datastore)"),
    ),
  ).action(async (remote: string, remoteStore: string, store: string, o: SyncOptions, cmd: Command) => {
    const client = await adminClient(globals(cmd));
    const upid = await client.call<string>('POST', '/pull', {
      store,
      ...(remote !== '-' && { remote }),
      'remote-store': remoteStore,
      ...syncFields(o),
    });
    await followTask(client, upid);
  });

  withSyncOptions(
    program
      .command('push <store> <remote> <remote-store>')
      .description("sync a local datastore into a remote's now"),
  ).action(async (store: string, remote: string, remoteStore: string, o: SyncOptions, cmd: Command) => {
    const client = await adminClient(globals(cmd));
    const upid = await client.call<string>('POST', '/push', {
      store,
      remote,
      'remote-store': remoteStore,
      ...syncFields(o),
    });
    await followTask(client, upid);
  });

  const job = program.command('sync-job').description('scheduled sync jobs (config/sync)');
  job
    .command('list')
    .description('list sync jobs with their last and next run')
    .option('--sync-direction <dir>', 'pull (default), push or all', 'all')
    .action(async (o: { syncDirection: string }, cmd: Command) => {
      const g = globals(cmd);
      const jobs = await (
        await adminClient(g)
      ).call<Array<SyncJobConfig & Record<string, unknown>>>('GET', '/admin/sync', {
        'sync-direction': o.syncDirection,
      });
      printRows(
        jobs,
        [
          { header: 'id', value: (j) => j.id },
          { header: 'direction', value: (j) => j['sync-direction'] ?? 'pull' },
          { header: 'store', value: (j) => (j.ns ? `${j.store}:${j.ns}` : j.store) },
          { header: 'remote', value: (j) => j.remote ?? '-' },
          { header: 'remote-store', value: (j) => j['remote-store'] },
          { header: 'schedule', value: (j) => j.schedule },
          {
            header: 'last run',
            value: (j) => (j['last-run-state'] === undefined ? undefined : String(j['last-run-state'])),
          },
          {
            header: 'next run',
            value: (j) =>
              typeof j['next-run'] === 'number' ? new Date(j['next-run'] * 1000).toISOString() : undefined,
          },
        ],
        g.outputFormat,
      );
    });

  job
    .command('show <id>')
    .description('show one sync job')
    .action(async (id: string, _o, cmd: Command) => {
      const g = globals(cmd);
      printRecord(
        await (await adminClient(g)).call<Record<string, unknown>>('GET', jobPath(id)),
        g.outputFormat,
      );
    });

  withResyncCorrupt(withSyncOptions(job.command('create <id>').description('create a sync job')))
    .requiredOption('--store <datastore>', 'the local datastore')
    .requiredOption('--remote-store <datastore>', "the remote's datastore (a local one without --remote)")
    .option('--remote <remote>', 'the remote')
    .option('--schedule <calendar-event>', 'when it runs (UTC), e.g. "daily"')
    .option('--sync-direction <dir>', 'pull (default) or push')
    .option('--owner <auth-id>', 'owner of the synced groups (pull; default root@pam)')
    .option('--comment <text>')
    .action(async (id: string, o: SyncOptions & Record<string, string | undefined>, cmd: Command) => {
      await (
        await adminClient(globals(cmd))
      ).call('POST', jobPath(), {
        id,
        store: o.store,
        remote: o.remote,
        'remote-store': o.remoteStore,
        schedule: o.schedule,
        'sync-direction': o.syncDirection,
        owner: o.owner,
        comment: o.comment,
        ...syncFields(o),
      });
      process.stdout.write(`sync job '${id}' created\n`);
    });

  withResyncCorrupt(withSyncOptions(job.command('update <id>').description('change a sync job')))
    .option('--schedule <calendar-event>')
    .option('--owner <auth-id>')
    .option('--comment <text>')
    .option('--delete <property...>', 'properties to remove (schedule, remove-vanished, group-filter, ...)')
    .action(async (id: string, o: SyncOptions & Record<string, unknown>, cmd: Command) => {
      await (
        await adminClient(globals(cmd))
      ).call('PUT', jobPath(id), {
        schedule: o.schedule,
        owner: o.owner,
        comment: o.comment,
        ...syncFields(o),
        ...(Array.isArray(o.delete) && { delete: o.delete }),
      });
      process.stdout.write(`sync job '${id}' updated\n`);
    });

  job
    .command('remove <id>')
    .description('remove a sync job')
    .action(async (id: string, _o, cmd: Command) => {
      await (await adminClient(globals(cmd))).call('DELETE', jobPath(id));
      process.stdout.write(`sync job '${id}' removed\n`);
    });

  job
    .command('run <id>')
    .description('run a sync job now and follow its task log')
    .action(async (id: string, _o, cmd: Command) => {
      const client = await adminClient(globals(cmd));
      await followTask(
        client,
        await client.call<string>('POST', `/admin/sync/${encodeURIComponent(id)}/run`),
      );
    });
}
