/**
 * `stowage datastore ...`: datastore configuration, maintenance mode and active operations, all
 * through the running server's API (so every change takes the same locks and admission rules as
 * the API and the UI).
 */
import { Option, type Command } from 'commander';
import {
  describeOperation,
  type ActiveOperationsReply,
  type OperationItem,
} from '../../api-types/operations.js';
import {
  ERR_DRAIN_TIMEOUT,
  ERR_DRAIN_TIMEOUT_NOT_REVERTED,
  ERR_DRAIN_TIMEOUT_REVERTED,
  ERR_DRY_RUN_WITH_WAIT,
  ERR_MAINTENANCE_TYPE_INVALID,
} from '../../errors.js';
import { OPERATOR_SETTABLE, type MaintenanceType } from '../../api-types/maintenance.js';
import {
  conflictingClasses,
  formatMaintenanceMode,
  parseMaintenanceMode,
  type MaintenanceMode,
} from '../../maintenance/maintenance-mode.js';
import { adminClient, type AdminApi, type GlobalOptions } from './admin-connection.js';
import { parseDuration, printJson, printRecord, printRows, type OutputFormat } from './output.js';
import { followTask } from './task-wait.js';
import { registerMaintenanceWindowCommands } from './maintenance-window-commands.js';
import { registerMaintenanceHistoryCommand } from './maintenance-history-command.js';

interface DatastoreConfigItem {
  name: string;
  path: string;
  comment?: string;
  'gc-schedule'?: string;
  'maintenance-mode'?: string;
  [k: string]: unknown;
}

type ActiveOperation = OperationItem;

/** What the server answers (older servers send neither the ingest/reclaim split nor holds). */
type ActiveOperations = Pick<ActiveOperationsReply, 'read' | 'write'> &
  Partial<Omit<ActiveOperationsReply, 'read' | 'write'>>;

interface DrainAnswer {
  drained: boolean;
  remaining: ActiveOperation[];
}

/** `PUT /config/datastore/{name}` with `dry-run`. */
interface DryRunAnswer {
  'mode-changes': boolean;
  'maintenance-mode'?: string;
  conflicting: ActiveOperation[];
  'skipped-jobs': Array<{ type: string; id: string; schedule?: string; 'next-run'?: number }>;
}

/** `POST /admin/datastore/{store}/abort-conflicting`. */
interface AbortAnswer {
  aborted: ActiveOperation[];
  waiting: ActiveOperation[];
}

/** What `maintenance set --wait` does when the store has not drained by `--timeout`. */
const ON_TIMEOUT = ['keep', 'revert', 'abort'] as const;
type OnTimeout = (typeof ON_TIMEOUT)[number];

/**
 * With `--on-timeout abort`: how long the aborted tasks get to end (they stop at their next check,
 * within seconds) before the command gives up as a timeout.
 */
const ABORT_GRACE_MS = 60_000;

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

type HoldItem = ActiveOperationsReply['holds'][number];

/** `sealed (low-space): low space: 4% free`: a system hold, with its source. */
function describeHold(h: HoldItem): string {
  return `${h.type} (${h.source}): ${h.message}`;
}

/**
 * The operator's mode and the system holds, one line: `maintenance: none; system hold: sealed
 * (low-space): low space: 4% free`. Both are in force; a hold is not lifted by clearing the mode.
 */
function describeModeAndHolds(raw: string | undefined, holds: readonly HoldItem[] = []): string {
  return [`maintenance: ${describeMode(raw)}`, ...holds.map((h) => `system hold: ${describeHold(h)}`)].join(
    '; ',
  );
}

/** `POST /admin/datastore/{store}/force-release`. */
interface ForceReleaseAnswer {
  released?: HoldItem;
  warning?: string;
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
 * Wait until no conflicting operation remains, printing each change of the remaining set, for at
 * most `timeoutMs`; returns what still runs then. The server long-polls for at most 30 s per call.
 */
async function waitDrained(client: AdminApi, name: string, timeoutMs: number): Promise<DrainAnswer> {
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
      return answer;
    }
    if (key !== last) {
      process.stdout.write(`waiting for ${answer.remaining.length} conflicting operation(s):\n`);
      for (const op of answer.remaining) process.stdout.write(`  ${describeActiveOperation(op)}\n`);
      last = key;
    }
    if (Date.now() >= deadline) return answer;
  }
}

/** The timeout error naming what still runs. */
function drainTimeout(name: string, timeoutMs: number, remaining: ActiveOperation[]): Error {
  return ERR_DRAIN_TIMEOUT(
    name,
    Math.round(timeoutMs / 1000),
    remaining.length,
    remaining.map(describeActiveOperation).join('; '),
  );
}

/** `none`, or the mode as the operator wrote it: `read-only maintenance mode`. */
function modeWords(raw: string | undefined): string {
  return raw ? `${describeMode(raw)} maintenance mode` : 'no maintenance mode';
}

/**
 * `--on-timeout revert`: put back the mode in force before the change — unless someone changed
 * the mode meanwhile, which is theirs to keep — and fail naming what blocked the drain.
 */
async function revertMode(
  client: AdminApi,
  name: string,
  set: { previous: string | undefined; ours: string },
  timeoutMs: number,
  remaining: ActiveOperation[],
): Promise<never> {
  const path = `/config/datastore/${encodeURIComponent(name)}`;
  const seconds = Math.round(timeoutMs / 1000);
  const now = (await client.call<DatastoreConfigItem>('GET', path))['maintenance-mode'];
  if (now !== set.ours) throw ERR_DRAIN_TIMEOUT_NOT_REVERTED(name, seconds, modeWords(now));
  await client.call(
    'PUT',
    path,
    set.previous === undefined ? { delete: ['maintenance-mode'] } : { 'maintenance-mode': set.previous },
  );
  process.stdout.write(`datastore '${name}' reverted to ${modeWords(set.previous)}\n`);
  throw ERR_DRAIN_TIMEOUT_REVERTED(
    name,
    seconds,
    modeWords(set.previous),
    remaining.length,
    remaining.map(describeActiveOperation).join('; '),
  );
}

/**
 * `--on-timeout abort`: abort the tasks of what still conflicts (their processes end them with the
 * mode's refusal), then wait for the drain to finish.
 */
async function abortAndDrain(client: AdminApi, name: string, timeoutMs: number): Promise<void> {
  const answer = await client.call<AbortAnswer>(
    'POST',
    `/admin/datastore/${encodeURIComponent(name)}/abort-conflicting`,
  );
  process.stdout.write(
    `datastore '${name}' did not drain within ${Math.round(timeoutMs / 1000)}s: aborting ${answer.aborted.length} conflicting operation(s)\n`,
  );
  for (const op of answer.aborted) process.stdout.write(`aborted: ${describeActiveOperation(op)}\n`);
  for (const op of answer.waiting) {
    process.stdout.write(`not abortable (no task), waiting for: ${describeActiveOperation(op)}\n`);
  }
  const after = await waitDrained(client, name, ABORT_GRACE_MS);
  if (!after.drained) throw drainTimeout(name, ABORT_GRACE_MS, after.remaining);
}

/** `maintenance set --dry-run`: what the change would do, one line per fact. */
function printDryRun(name: string, type: string, answer: DryRunAnswer): void {
  process.stdout.write(
    `dry run: nothing changed; datastore '${name}' would be in ${type} maintenance mode\n`,
  );
  if (answer.conflicting.length === 0) process.stdout.write('would conflict: nothing running\n');
  for (const op of answer.conflicting) {
    process.stdout.write(`would conflict: ${describeActiveOperation(op)}\n`);
  }
  if (answer['skipped-jobs'].length === 0) process.stdout.write('would skip: no scheduled job\n');
  for (const job of answer['skipped-jobs']) {
    const next =
      job['next-run'] === undefined ? '' : `, next run ${new Date(job['next-run'] * 1000).toISOString()}`;
    process.stdout.write(`would skip: ${job.type} ${job.id} (schedule ${job.schedule ?? 'none'}${next})\n`);
  }
}

/** The `mounted` column of `datastore list` (PBS's `mount-status` of a removable datastore). */
const MOUNT_STATUS_TEXT: Record<string, string> = { mounted: 'mounted', notmounted: 'not mounted' };

/**
 * The `mounted` column: a failed device or a failing object store says so with its reason,
 * before what PBS's status says.
 */
function mountColumn(
  item: { 'mount-status'?: string; unavailable?: string; 's3-endpoint-error'?: string } | undefined,
): string {
  if (item?.unavailable !== undefined) return `unavailable: ${item.unavailable}`;
  if (item?.['s3-endpoint-error'] !== undefined) return `unavailable: ${item['s3-endpoint-error']}`;
  return MOUNT_STATUS_TEXT[item?.['mount-status'] ?? ''] ?? '-';
}

export function registerDatastoreCommands(program: Command): void {
  const ds = program.command('datastore').description('manage datastores');

  ds.command('list')
    .description('list datastores with their maintenance mode')
    .action(async (_o, cmd: Command) => {
      const g = globals(cmd);
      const client = await adminClient(g);
      const stores = await client.call<DatastoreConfigItem[]>('GET', '/config/datastore');
      // the holds are the admin list's (a server before them sends none)
      const admin = await client.call<
        Array<{
          store: string;
          holds?: HoldItem[];
          'mount-status'?: string;
          unavailable?: string;
          's3-endpoint-error'?: string;
        }>
      >('GET', '/admin/datastore');
      const holds = new Map(admin.map((a) => [a.store, a.holds ?? []]));
      const mounts = new Map(admin.map((a) => [a.store, a]));
      printRows(
        stores,
        [
          { header: 'name', value: (s) => s.name },
          { header: 'path', value: (s) => s.path },
          { header: 'maintenance', value: (s) => describeMode(s['maintenance-mode']) },
          {
            header: 'system hold',
            value: (s) => (holds.get(s.name) ?? []).map(describeHold).join('; ') || 'none',
          },
          // removable datastores only (PBS's mount-status, or why its device failed); `-` for the others
          { header: 'mounted', value: (s) => mountColumn(mounts.get(s.name)) },
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
    .option(
      '--backing-device <uuid>',
      "a removable datastore on the device with this filesystem UUID (see blkid); <path> is then relative to the device's root",
    )
    .option('--reuse-datastore', 'take over the datastore already at the path instead of creating one')
    .option(
      '--backend <spec>',
      'type=s3,client=ENDPOINT,bucket=NAME[,max-cache-size=SIZE]: chunks and metadata in an S3 bucket, <path> is the local cache',
    )
    .option('--overwrite-in-use', "take over a bucket's store that another server's in-use marker names")
    .action(
      async (
        name: string,
        path: string,
        o: {
          comment?: string;
          gcSchedule?: string;
          backingDevice?: string;
          reuseDatastore?: boolean;
          backend?: string;
          overwriteInUse?: boolean;
        },
        cmd: Command,
      ) => {
        const client = await adminClient(globals(cmd));
        const upid = await client.call<string>('POST', '/config/datastore', {
          name,
          path,
          comment: o.comment,
          'gc-schedule': o.gcSchedule,
          'backing-device': o.backingDevice,
          'reuse-datastore': o.reuseDatastore,
          backend: o.backend,
          'overwrite-in-use': o.overwriteInUse,
        });
        await followTask(client, upid);
      },
    );

  ds.command('s3-refresh <name>')
    .description(
      "refill an S3 datastore's cache from its bucket: sets maintenance mode s3-refresh (reads and writes " +
        'refused), waits for running operations, downloads the metadata, puts back the previous mode',
    )
    .action(async (name: string, _o, cmd: Command) => {
      const client = await adminClient(globals(cmd));
      await followTask(
        client,
        await client.call<string>('PUT', `/admin/datastore/${encodeURIComponent(name)}/s3-refresh`),
      );
    });

  ds.command('mount <name>')
    .description("mount a removable datastore's device")
    .action(async (name: string, _o, cmd: Command) => {
      const client = await adminClient(globals(cmd));
      await followTask(
        client,
        await client.call<string>('POST', `/admin/datastore/${encodeURIComponent(name)}/mount`),
      );
    });

  ds.command('unmount <name>')
    .description(
      'unmount a removable datastore: nothing new is admitted, running operations finish (listed as they ' +
        'go), then its device is synced and unmounted; a failed unmount stays in maintenance mode unmount ' +
        '(run it again, or `maintenance clear` to keep using the datastore)',
    )
    .action(async (name: string, _o, cmd: Command) => {
      const client = await adminClient(globals(cmd));
      await followTask(
        client,
        await client.call<string>('POST', `/admin/datastore/${encodeURIComponent(name)}/unmount`),
      );
    });

  ds.command('update <name>')
    .description('change datastore options')
    .option('--comment <text>')
    .option('--gc-schedule <calendar-event>')
    .option(
      '--low-space-hold <percent>',
      'hold the datastore against new backups below this percent free (0: never; default 5)',
    )
    .option('--low-space-release <percent>', 'lift the low-space hold above this percent free (default 10)')
    .option('--delete <property...>', 'properties to remove (comment, gc-schedule, low-space-hold, ...)')
    .action(
      async (
        name: string,
        o: {
          comment?: string;
          gcSchedule?: string;
          lowSpaceHold?: string;
          lowSpaceRelease?: string;
          delete?: string[];
        },
        cmd: Command,
      ) => {
        const client = await adminClient(globals(cmd));
        // the server checks the percentages (a form value "5" is the integer 5)
        await client.call('PUT', `/config/datastore/${encodeURIComponent(name)}`, {
          comment: o.comment,
          'gc-schedule': o.gcSchedule,
          'low-space-hold': o.lowSpaceHold,
          'low-space-release': o.lowSpaceRelease,
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
        `read ${ops.read}, write ${ops.write}` +
          (ops.ingest !== undefined ? ` (ingest ${ops.ingest}, reclaim ${ops.reclaim ?? 0})` : '') +
          `, lookup ${ops.lookup ?? 0}; ${describeModeAndHolds(ops['maintenance-mode'], ops.holds)}` +
          (ops.conflicting ? `; ${ops.conflicting} conflicting` : '') +
          '\n',
      );
      printRows(ops.operations ?? [], OP_COLUMNS);
    });

  const mm = ds.command('maintenance').description('datastore maintenance mode');
  registerMaintenanceWindowCommands(mm);
  registerMaintenanceHistoryCommand(mm);

  mm.command('set <name> <type>')
    .description(
      'set read-only, sealed (no new backups; prune, deletion and GC go on) or offline (or PBS 4 unmount, s3-refresh); running operations finish, new conflicting ones are refused',
    )
    .option('--message <text>', 'shown to every refused client (at most 64 characters)')
    .option('--if-idle', 'refuse (exit code 3) instead of changing the mode while conflicting operations run')
    .option('--wait', 'wait until no conflicting operation is running')
    .option('--timeout <duration>', 'with --wait: give up after this long (e.g. 90s, 10m)', '10m')
    .addOption(
      new Option(
        '--on-timeout <policy>',
        'when --timeout passes (implies --wait): keep the mode and exit 6, revert to the previous mode and ' +
          'exit 6, or abort the conflicting tasks and backup sessions and finish',
      ).choices(ON_TIMEOUT),
    )
    .option(
      '--dry-run',
      'change nothing; list the running operations and scheduled jobs the mode would refuse',
    )
    .action(
      async (
        name: string,
        type: string,
        o: {
          message?: string;
          ifIdle?: boolean;
          wait?: boolean;
          timeout: string;
          onTimeout?: OnTimeout;
          dryRun?: boolean;
        },
        cmd: Command,
      ) => {
        if (!(OPERATOR_SETTABLE as readonly string[]).includes(type)) {
          throw ERR_MAINTENANCE_TYPE_INVALID(type, OPERATOR_SETTABLE.join(', '));
        }
        const settable = type as MaintenanceType;
        const mode: MaintenanceMode = o.message ? { type: settable, message: o.message } : { type: settable };
        const text = formatMaintenanceMode(mode); // validates the message before anything is sent
        const timeoutMs = parseDuration(o.timeout);
        // a deadline policy only means something with a wait, so asking for one asks to wait
        const wait = o.wait === true || o.onTimeout !== undefined;
        if (o.dryRun && wait) throw ERR_DRY_RUN_WITH_WAIT();
        const g = globals(cmd);
        const client = await adminClient(g);
        const path = `/config/datastore/${encodeURIComponent(name)}`;
        if (o.dryRun) {
          const answer = await client.call<DryRunAnswer>('PUT', path, {
            'maintenance-mode': text,
            'dry-run': true,
          });
          if (g.outputFormat !== 'text') return printJson(answer, g.outputFormat);
          return printDryRun(name, type, answer);
        }
        // read before setting: the mode `--on-timeout revert` puts back
        const previous =
          o.onTimeout === 'revert'
            ? (await client.call<DatastoreConfigItem>('GET', path))['maintenance-mode']
            : undefined;
        await client.call('PUT', path, { 'maintenance-mode': text, 'if-idle': o.ifIdle });
        process.stdout.write(`datastore '${name}' is now in ${type} maintenance mode\n`);
        if (!wait) return;
        const answer = await waitDrained(client, name, timeoutMs);
        if (answer.drained) return;
        switch (o.onTimeout ?? 'keep') {
          case 'keep':
            throw drainTimeout(name, timeoutMs, answer.remaining);
          case 'revert':
            return revertMode(client, name, { previous, ours: text }, timeoutMs, answer.remaining);
          case 'abort':
            return abortAndDrain(client, name, timeoutMs);
        }
      },
    );

  mm.command('clear <name>')
    .description(
      "end the operator's maintenance mode; system holds (low space, windows) stay unless --force lifts them",
    )
    .option(
      '--force',
      'also lift the system holds (a low-space hold stays lifted until space has been freed)',
    )
    .action(async (name: string, o: { force?: boolean }, cmd: Command) => {
      const client = await adminClient(globals(cmd));
      const store = encodeURIComponent(name);
      await client.call('PUT', `/config/datastore/${store}`, { delete: ['maintenance-mode'] });
      process.stdout.write(`datastore '${name}' left maintenance mode\n`);
      const { holds = [] } = await client.call<ActiveOperations>(
        'GET',
        `/admin/datastore/${store}/active-operations`,
      );
      for (const hold of holds) {
        if (!o.force) {
          process.stdout.write(`a system hold stays: ${hold.message}; use --force to lift it\n`);
          continue;
        }
        const answer = await client.call<ForceReleaseAnswer>(
          'POST',
          `/admin/datastore/${store}/force-release`,
          {
            source: hold.source,
          },
        );
        if (!answer.released) continue; // lifted meanwhile, by itself or by someone else
        process.stdout.write(
          `datastore '${name}': system hold lifted by force: ${describeHold(answer.released)}\n`,
        );
        if (answer.warning) process.stderr.write(`warning: ${answer.warning}\n`);
      }
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
      process.stdout.write(`${describeModeAndHolds(raw, ops.holds)}\n`);
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
      const timeoutMs = parseDuration(o.timeout);
      const answer = await waitDrained(await adminClient(globals(cmd)), name, timeoutMs);
      if (!answer.drained) throw drainTimeout(name, timeoutMs, answer.remaining);
    });
}
