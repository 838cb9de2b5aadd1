/**
 * `stowage datastore maintenance window list|show|create|update|remove`: scheduled maintenance
 * windows (`config/maintenance-window`), beside the commands that set a mode by hand.
 */
import type { Command } from 'commander';
import type { MaintenanceWindowConfig } from '../../api-types/maintenance-window.js';
import { windowOccurrence } from '../../maintenance/window-schedule.js';
import { adminClient, type GlobalOptions } from './admin-connection.js';
import { printRecord, printRows, type OutputFormat } from './output.js';

const globals = (cmd: Command) => cmd.optsWithGlobals() as GlobalOptions & { outputFormat: OutputFormat };

const path = (id?: string) =>
  id === undefined ? '/config/maintenance-window' : `/config/maintenance-window/${encodeURIComponent(id)}`;

interface WindowOptions {
  store?: string;
  schedule?: string;
  duration?: string;
  type?: string;
  message?: string;
  drainBefore?: string;
  comment?: string;
  disable?: boolean;
}

/** The API's field names; unset options are left out (the JSON body drops undefined). */
function windowFields(o: WindowOptions): Record<string, unknown> {
  return {
    store: o.store,
    schedule: o.schedule,
    duration: o.duration,
    type: o.type,
    message: o.message,
    'drain-before': o.drainBefore,
    comment: o.comment,
    disable: o.disable,
  };
}

const withWindowOptions = (cmd: Command): Command =>
  cmd
    .option('--store <datastore>', 'the datastore the window holds')
    .option('--schedule <calendar-event>', 'when each window starts (UTC), e.g. "sat 02:00"')
    .option('--duration <time-span>', 'how long each window lasts, e.g. "2h 30min"')
    .option('--type <type>', 'hold during the window: read-only, sealed or offline')
    .option('--message <text>', 'shown to refused clients (at most 64 characters)')
    .option('--drain-before <time-span>', 'admit no new backup, verify, GC or sync this long before')
    .option('--comment <text>');

/** When the window holds next (or now), for the list. */
function nextText(w: MaintenanceWindowConfig, now: Date): string {
  if (w.disable) return 'disabled';
  try {
    const occ = windowOccurrence(w, now);
    if (!occ) return 'never';
    const iso = (d: Date) => d.toISOString().replace(/\.000Z$/, 'Z');
    if (occ.phase === 'active') return `now, until ${iso(occ.end)}`;
    return occ.phase === 'draining' ? `draining, starts ${iso(occ.start)}` : iso(occ.start);
  } catch {
    return 'invalid';
  }
}

export function registerMaintenanceWindowCommands(maintenance: Command): void {
  const win = maintenance.command('window').description('scheduled maintenance windows');

  win
    .command('list')
    .description('list maintenance windows with their next start')
    .option('--store <datastore>', 'only the windows of this datastore')
    .action(async (o: { store?: string }, cmd: Command) => {
      const g = globals(cmd);
      const all = await (await adminClient(g)).call<MaintenanceWindowConfig[]>('GET', path());
      const windows = all.filter((w) => o.store === undefined || w.store === o.store);
      const now = new Date();
      printRows(
        windows,
        [
          { header: 'id', value: (w) => w.id },
          { header: 'store', value: (w) => w.store },
          { header: 'schedule', value: (w) => w.schedule },
          { header: 'duration', value: (w) => w.duration },
          { header: 'type', value: (w) => w.type },
          { header: 'drain-before', value: (w) => w['drain-before'] },
          { header: 'next', value: (w) => nextText(w, now) },
          { header: 'message', value: (w) => w.message },
        ],
        g.outputFormat,
      );
    });

  win
    .command('show <id>')
    .description('show one maintenance window')
    .action(async (id: string, _o, cmd: Command) => {
      const g = globals(cmd);
      const w = await (await adminClient(g)).call<MaintenanceWindowConfig>('GET', path(id));
      printRecord({ ...w, next: nextText(w, new Date()) }, g.outputFormat);
    });

  withWindowOptions(win.command('create <id>').description('schedule a maintenance window'))
    .option('--disable', 'create it disabled')
    .action(async (id: string, o: WindowOptions, cmd: Command) => {
      await (await adminClient(globals(cmd))).call('POST', path(), { id, ...windowFields(o) });
      process.stdout.write(`maintenance window '${id}' created\n`);
    });

  withWindowOptions(win.command('update <id>').description('change a maintenance window'))
    .option('--disable', 'disable it (lifts its hold at once)')
    .option('--enable', 'enable it again')
    .option('--delete <property...>', 'properties to remove (message, drain-before, comment, disable)')
    .action(async (id: string, o: WindowOptions & { enable?: boolean; delete?: string[] }, cmd: Command) => {
      const del = [...(o.delete ?? []), ...(o.enable ? ['disable'] : [])];
      await (
        await adminClient(globals(cmd))
      ).call('PUT', path(id), { ...windowFields(o), ...(del.length > 0 && { delete: del }) });
      process.stdout.write(`maintenance window '${id}' updated\n`);
    });

  win
    .command('remove <id>')
    .description('remove a maintenance window (lifts its hold at once)')
    .action(async (id: string, _o, cmd: Command) => {
      await (await adminClient(globals(cmd))).call('DELETE', path(id));
      process.stdout.write(`maintenance window '${id}' removed\n`);
    });
}
