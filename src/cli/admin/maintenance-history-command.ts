/**
 * `stowage datastore maintenance history NAME`: the datastore's maintenance events newest first
 * (`admin/datastore/{store}/maintenance-history`), as a table or JSON.
 */
import type { Command } from 'commander';
import {
  formatDrainDuration,
  HISTORY_DEFAULT_LIMIT,
  HISTORY_MAX_LIMIT,
  historyTime,
  historyTransition,
  historyWho,
  type MaintenanceHistoryItem,
} from '../../api-types/maintenance-history.js';
import { ERR_CLI_NUMBER_INVALID } from '../../errors.js';
import { adminClient, type GlobalOptions } from './admin-connection.js';
import { printRows, type OutputFormat } from './output.js';

const globals = (cmd: Command) => cmd.optsWithGlobals() as GlobalOptions & { outputFormat: OutputFormat };

/** A whole number within bounds, or the one-line error naming the option (before any request). */
function wholeNumber(option: string, text: string, min: number, max: number): number {
  const n = /^\d+$/.test(text) ? Number(text) : NaN;
  if (!(n >= min && n <= max)) throw ERR_CLI_NUMBER_INVALID(option, text, min, max);
  return n;
}

export function registerMaintenanceHistoryCommand(maintenance: Command): void {
  maintenance
    .command('history <name>')
    .description('show who changed the maintenance mode when, the holds, and how long each drain took')
    .option(
      '--limit <n>',
      `how many events, newest first (at most ${HISTORY_MAX_LIMIT})`,
      String(HISTORY_DEFAULT_LIMIT),
    )
    .option('--before <id>', 'only events older than this event id (the next page)')
    .action(async (name: string, o: { limit: string; before?: string }, cmd: Command) => {
      const limit = wholeNumber('--limit', o.limit, 1, HISTORY_MAX_LIMIT);
      const before =
        o.before === undefined ? undefined : wholeNumber('--before', o.before, 1, Number.MAX_SAFE_INTEGER);
      const g = globals(cmd);
      const items = await (
        await adminClient(g)
      ).call<MaintenanceHistoryItem[]>(
        'GET',
        `/admin/datastore/${encodeURIComponent(name)}/maintenance-history`,
        { limit, before },
      );
      printRows(
        items,
        [
          { header: 'time', value: historyTime },
          { header: 'event', value: (e) => e.type },
          { header: 'from → to', value: historyTransition },
          { header: 'by', value: historyWho },
          { header: 'message', value: (e) => e.message },
          { header: 'drain', value: (e) => formatDrainDuration(e.duration) },
        ],
        g.outputFormat,
      );
    });
}
