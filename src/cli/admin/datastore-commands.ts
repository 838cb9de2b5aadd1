/**
 * `stowage datastore ...`: datastore configuration, maintenance mode and active operations, all
 * through the running server's API (so every change takes the same locks and admission rules as
 * the API and the UI).
 */
import type { Command } from 'commander';
import { describeOperation, type OperationItem } from '../../api-types/operations.js';
import { ERR_DRAIN_TIMEOUT, ERR_MAINTENANCE_TYPE_INVALID } from '../../errors.js';
import { OPERATOR_SETTABLE, type MaintenanceType } from '../../api-types/maintenance.js';
import {
  conflictingClasses,
  formatMaintenanceMode,
  parseMaintenanceMode,
  type MaintenanceMode,
} from '../../maintenance/maintenance-mode.js';
import { adminClient, type GlobalOptions } from './admin-connection.js';
import { parseDuration, printJson, printRecord, printRows, type OutputFormat } from './output.js';
import { followTask } from './task-wait.js';

interface DatastoreConfigItem {
  name: string;
  path: string;
  comment?: string;
  'gc-schedule'?: string;
  'maintenance-mode'?: string;
  [k: string]: unknown;
}

type ActiveOperation = OperationItem;

interface ActiveOperations {
  read: number;
  write: number;
  lookup?: number;
  conflicting?: number;
  operations?: ActiveOperation[];
  'maintenance-mode'?: string;
}

interface DrainAnswer {
  drained: boolean;
  remaining: ActiveOperation[];
}

const globals = (cmd: Command) => cmd.optsWithGlobals() as GlobalOptions & { outputFormat: OutputFormat };

/** `backup host/web01 by alice@pbs since 10:02:11Z (pid 123)` */
export function describeActiveOperation(op: ActiveOperation): string {
  return describeOperation({ ...op, authId: op['auth-id'], startedMs: op.started * 1000 });
}

function describeMode(raw: string | undefined): string {
  if (!raw) return 'none';
  try {
    const m = parseMaintenanceMode(raw);
    return m.message ? `${m.type} (${m.message})` : m.type;
  } catch {
    return `invalid: ${raw}`;
  }
}

const OP_COLUMNS = [
  { header: 'id', value: (o: ActiveOperation) => o.id },
  { header: 'class', value: (o: ActiveOperation) => o.class },
  { header: 'kind', value: (o: ActiveOperation) => o.kind },
  { header: 'detail', value: (o: ActiveOperation) => o.detail },
  { header: 'user', value: (o: ActiveOperation) => o['auth-id'] },
  { header: 'pid', value: (o: ActiveOperation) => o.pid },
  { header: 'since', value: (o: ActiveOperation) => new Date(o.started * 1000).toISOString() },
];

/**
 * Wait until no conflicting operation remains, printing each change of the remaining set;
 * throws TIMEOUT naming what still runs. The server long-polls for at most 30 s per call.
 */
async function waitDrained(cmd: Command, name: string, timeoutMs: number): Promise<void> {
  const client = await adminClient(globals(cmd));
  const deadline = Date.now() + timeoutMs;
  let last = '';
  for (;;) {
    const left = deadline - Date.now();
    const answer = await client.call<DrainAnswer>(
      'POST',
      `/admin/datastore/${encodeURIComponent(name)}/wait-drained`,
      {
        timeout: Math.max(1, Math.min(30, Math.ceil(left / 1000))),
      },
    );
    const key = answer.remaining.map((o) => o.id).join(',');
    if (answer.drained) {
      process.stdout.write(`datastore '${name}' drained: no conflicting operation is running\n`);
      return;
    }
    if (key !== last) {
      process.stdout.write(`waiting for ${answer.remaining.length} conflicting operation(s):\n`);
      for (const op of answer.remaining) process.stdout.write(`  ${describeActiveOperation(op)}\n`);
      last = key;
    }
    if (Date.now() >= deadline) {
      throw ERR_DRAIN_TIMEOUT(
        name,
        Math.round(timeoutMs / 1000),
        answer.remaining.length,
        answer.remaining.map(describeActiveOperation).join('; '),
      );
    }
  }
}

export function registerDatastoreCommands(program: Command): void {
  const ds = program.command('datastore').description('manage datastores');

  ds.command('list')
    .description('list datastores with their maintenance mode')
    .action(async (_o, cmd: Command) => {
      const g = globals(cmd);
      const stores = await (await adminClient(g)).call<DatastoreConfigItem[]>('GET', '/config/datastore');
      printRows(
        stores,
        [
          { header: 'name', value: (s) => s.name },
          { header: 'path', value: (s) => s.path },
          { header: 'maintenance', value: (s) => describeMode(s['maintenance-mode']) },
          { header: 'comment', value: (s) => s.comment },
        ],
        g.outputFormat,
      );
    });

  ds.command('show <name>')
    .description('show the configuration of a datastore')
    .action(async (name: string, _o, cmd: Command) => {
      const g = globals(cmd);
      const cfg = await (
        await adminClient(g)
      ).call<DatastoreConfigItem>('GET', `/config/datastore/${encodeURIComponent(name)}`);
      printRecord(cfg, g.outputFormat);
    });

  ds.command('create <name> <path>')
    .description('create a datastore (chunk store and configuration)')
    .option('--comment <text>')
    .option('--gc-schedule <calendar-event>')
    .action(
      async (name: string, path: string, o: { comment?: string; gcSchedule?: string }, cmd: Command) => {
        const client = await adminClient(globals(cmd));
        const upid = await client.call<string>('POST', '/config/datastore', {
          name,
          path,
          comment: o.comment,
          'gc-schedule': o.gcSchedule,
        });
        await followTask(client, upid);
      },
    );

  ds.command('update <name>')
    .description('change datastore options')
    .option('--comment <text>')
    .option('--gc-schedule <calendar-event>')
    .option('--delete <property...>', 'properties to remove (comment, gc-schedule, ...)')
    .action(
      async (name: string, o: { comment?: string; gcSchedule?: string; delete?: string[] }, cmd: Command) => {
        const client = await adminClient(globals(cmd));
        await client.call('PUT', `/config/datastore/${encodeURIComponent(name)}`, {
          comment: o.comment,
          'gc-schedule': o.gcSchedule,
          delete: o.delete,
        });
      },
    );

  ds.command('remove <name>')
    .description('remove a datastore: waits for running operations, or restores its mode and reports them')
    .option('--destroy-data', 'also delete all backups and chunks on disk')
    .option('--keep-job-configs', 'keep prune and verify jobs of this datastore')
    .option('--if-idle', 'refuse at once when operations are running')
    .option('--timeout <duration>', 'how long to wait for running operations', '60s')
    .action(
      async (
        name: string,
        o: { destroyData?: boolean; keepJobConfigs?: boolean; ifIdle?: boolean; timeout: string },
        cmd: Command,
      ) => {
        const client = await adminClient(globals(cmd));
        const upid = await client.call<string>('DELETE', `/config/datastore/${encodeURIComponent(name)}`, {
          'destroy-data': o.destroyData,
          'keep-job-configs': o.keepJobConfigs,
          'if-idle': o.ifIdle,
          timeout: Math.ceil(parseDuration(o.timeout) / 1000),
        });
        await followTask(client, upid);
      },
    );

  ds.command('active-operations <name>')
    .description('list the operations running on a datastore, in every process on this host')
    .action(async (name: string, _o, cmd: Command) => {
      const g = globals(cmd);
      const ops = await (
        await adminClient(g)
      ).call<ActiveOperations>('GET', `/admin/datastore/${encodeURIComponent(name)}/active-operations`);
      if (g.outputFormat !== 'text') return printJson(ops, g.outputFormat);
      process.stdout.write(
        `read ${ops.read}, write ${ops.write}, lookup ${ops.lookup ?? 0}; maintenance: ${describeMode(ops['maintenance-mode'])}` +
          (ops.conflicting ? `; ${ops.conflicting} conflicting` : '') +
          '\n',
      );
      printRows(ops.operations ?? [], OP_COLUMNS);
    });

  const mm = ds.command('maintenance').description('datastore maintenance mode');

  mm.command('set <name> <type>')
    .description(
      'set read-only or offline (or PBS 4 unmount, s3-refresh); running operations finish, new conflicting ones are refused',
    )
    .option('--message <text>', 'shown to every refused client (at most 64 characters)')
    .option('--if-idle', 'refuse (exit code 3) instead of changing the mode while conflicting operations run')
    .option('--wait', 'wait until no conflicting operation is running')
    .option('--timeout <duration>', 'with --wait: give up after this long (e.g. 90s, 10m)', '10m')
    .action(
      async (
        name: string,
        type: string,
        o: { message?: string; ifIdle?: boolean; wait?: boolean; timeout: string },
        cmd: Command,
      ) => {
        if (!(OPERATOR_SETTABLE as readonly string[]).includes(type)) {
          throw ERR_MAINTENANCE_TYPE_INVALID(type, OPERATOR_SETTABLE.join(', '));
        }
        const settable = type as MaintenanceType;
        const mode: MaintenanceMode = o.message ? { type: settable, message: o.message } : { type: settable };
        const text = formatMaintenanceMode(mode); // validates the message before anything is sent
        const timeoutMs = parseDuration(o.timeout);
        const client = await adminClient(globals(cmd));
        await client.call('PUT', `/config/datastore/${encodeURIComponent(name)}`, {
          'maintenance-mode': text,
          'if-idle': o.ifIdle,
        });
        process.stdout.write(`datastore '${name}' is now in ${type} maintenance mode\n`);
        if (o.wait) await waitDrained(cmd, name, timeoutMs);
      },
    );

  mm.command('clear <name>')
    .description('end maintenance: the datastore serves everything again')
    .action(async (name: string, _o, cmd: Command) => {
      const client = await adminClient(globals(cmd));
      await client.call('PUT', `/config/datastore/${encodeURIComponent(name)}`, {
        delete: ['maintenance-mode'],
      });
      process.stdout.write(`datastore '${name}' left maintenance mode\n`);
    });

  mm.command('show <name>')
    .description('show the mode and the conflicting operations still running')
    .action(async (name: string, _o, cmd: Command) => {
      const g = globals(cmd);
      const ops = await (
        await adminClient(g)
      ).call<ActiveOperations>('GET', `/admin/datastore/${encodeURIComponent(name)}/active-operations`);
      const raw = ops['maintenance-mode'];
      const mode = raw ? parseMaintenanceMode(raw) : undefined;
      const blocking = conflictingClasses(mode) as string[];
      const conflicting = (ops.operations ?? []).filter((o) => blocking.includes(o.class));
      if (g.outputFormat !== 'text') return printJson({ mode: mode ?? null, conflicting }, g.outputFormat);
      process.stdout.write(`maintenance: ${describeMode(raw)}\n`);
      if (!mode) return;
      const n = conflicting.length;
      process.stdout.write(
        n === 0
          ? 'drained: no conflicting operation is running\n'
          : `${n} conflicting operation(s) still running:\n`,
      );
      if (n > 0) printRows(conflicting, OP_COLUMNS);
    });

  mm.command('wait <name>')
    .description('wait until no operation conflicting with the current mode is running')
    .option('--timeout <duration>', 'give up after this long', '10m')
    .action(async (name: string, o: { timeout: string }, cmd: Command) => {
      await waitDrained(cmd, name, parseDuration(o.timeout));
    });
}
