/** `stowage gc|verify|prune NAME`: start datastore maintenance work as server tasks and follow them. */
import type { Command } from 'commander';
import { KEEP_OPTION_NAMES } from '../../api-types/prune-options.js';
import { adminClient, type GlobalOptions } from './admin-connection.js';
import { printRows, type OutputFormat } from './output.js';
import { followTask } from './task-wait.js';

const globals = (cmd: Command) => cmd.optsWithGlobals() as GlobalOptions & { outputFormat: OutputFormat };
const storePath = (name: string) => `/admin/datastore/${encodeURIComponent(name)}`;

export function registerJobCommands(program: Command): void {
  program
    .command('gc <datastore>')
    .description('run garbage collection on a datastore and follow its task log')
    .action(async (name: string, _o, cmd: Command) => {
      const client = await adminClient(globals(cmd));
      await followTask(client, await client.call<string>('POST', `${storePath(name)}/gc`));
    });

  program
    .command('verify <datastore>')
    .description('verify all snapshots of a datastore (records the result in each manifest)')
    .option('--read-only', 'record nothing on disk (works on a read-only datastore); only report')
    .option('--ignore-verified', 'skip snapshots already verified')
    .action(async (name: string, o: { readOnly?: boolean; ignoreVerified?: boolean }, cmd: Command) => {
      const client = await adminClient(globals(cmd));
      const upid = await client.call<string>('POST', `${storePath(name)}/verify`, {
        'read-only': o.readOnly,
        'ignore-verified': o.ignoreVerified,
      });
      await followTask(client, upid);
    });

  const prune = program
    .command('prune <datastore>')
    .description('prune every backup group of a datastore with the given retention')
    .option('--dry-run', 'only list what would be kept and removed')
    .option('--ns <namespace>', 'namespace to prune');
  for (const k of KEEP_OPTION_NAMES) prune.option(`--${k} <n>`, `retention: ${k}`, (v) => Number(v));
  prune.action(async (name: string, o: Record<string, unknown>, cmd: Command) => {
    const g = globals(cmd);
    const client = await adminClient(g);
    const params: Record<string, unknown> = { 'dry-run': o.dryRun, ns: o.ns };
    for (const k of KEEP_OPTION_NAMES) {
      const camel = k.replace(/-(\w)/g, (_m, c: string) => c.toUpperCase());
      params[k] = o[camel];
    }
    const upid = await client.call<string>('POST', `${storePath(name)}/prune-datastore`, params);
    await followTask(client, upid);
  });

  const task = program.command('task').description('worker tasks');
  task
    .command('list')
    .description('list recent tasks')
    .option('--limit <n>', 'how many', (v) => Number(v), 50)
    .option('--running', 'only running tasks')
    .action(async (o: { limit: number; running?: boolean }, cmd: Command) => {
      const g = globals(cmd);
      const tasks = await (
        await adminClient(g)
      ).call<Array<Record<string, unknown>>>('GET', '/nodes/localhost/tasks', {
        limit: o.limit,
        running: o.running,
      });
      printRows(
        tasks,
        [
          { header: 'starttime', value: (t) => new Date(Number(t.starttime) * 1000).toISOString() },
          { header: 'type', value: (t) => t.worker_type },
          { header: 'id', value: (t) => t.worker_id },
          { header: 'user', value: (t) => t.user },
          { header: 'status', value: (t) => t.status ?? 'running' },
          { header: 'upid', value: (t) => t.upid },
        ],
        g.outputFormat,
      );
    });
  task
    .command('log <upid>')
    .description('print a task log (follows a running task)')
    .action(async (upid: string, _o, cmd: Command) => {
      const client = await adminClient(globals(cmd));
      process.stdout.write(`status: ${await followTask(client, upid)}\n`);
    });
}
