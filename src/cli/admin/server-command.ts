/** `stowage server`: run the HTTPS server (API, protocols, web UI, scheduler). */
import type { Command } from 'commander';
import { readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { pino } from 'pino';
import { resolvePaths } from '../../config/paths.js';
import { replaceFile } from '../../sys/atomic-file.js';
import { startServer } from '../../server/server.js';
import { startScheduler } from '../../jobs/scheduler.js';
import { inheritedListenFd, installGracefulRestart } from '../../server/restart.js';
import { parseHostPort } from './admin-connection.js';
import { ensureQuickstartDatastore } from './quickstart.js';
import { keepRunningWhenOutputCloses } from '../pipe-closed.js';

interface ServerOptions {
  listen: string;
  configDir?: string;
  dataDir?: string;
  runDir?: string;
  quickstart?: boolean;
}

export function registerServerCommand(program: Command): void {
  program
    .command('server')
    .description('run the Stowage server (HTTPS API on port 8007, web UI, backup protocol, scheduler)')
    .option(
      '--listen <host:port>',
      'address to listen on (env STOWAGE_LISTEN)',
      process.env.STOWAGE_LISTEN ?? '0.0.0.0:8007',
    )
    .option('--data-dir <dir>', 'state directory: task logs, job state (env STOWAGE_DATA_DIR)')
    .option('--run-dir <dir>', 'runtime directory: locks, operation registry (env STOWAGE_RUN_DIR)')
    .option('--quickstart', 'create the default datastore "local" under the data dir when none exists')
    .action(async (_o, cmd: Command) => {
      // --config-dir is a global option: the admin commands need it too
      const opts = cmd.optsWithGlobals() as ServerOptions;
      keepRunningWhenOutputCloses();
      const paths = resolvePaths({
        ...(opts.configDir && { configDir: opts.configDir }),
        ...(opts.dataDir && { dataDir: opts.dataDir }),
        ...(opts.runDir && { runDir: opts.runDir }),
      });
      // after a graceful restart (SIGHUP) the listening socket is inherited from the old process
      const fd = inheritedListenFd();
      if (opts.quickstart && fd === undefined) {
        await ensureQuickstartDatastore(paths, (l) => process.stdout.write(l + '\n'));
      }
      const server = await startServer({
        listen: fd !== undefined ? { fd } : parseHostPort(opts.listen),
        paths,
        logger: pino({ level: process.env.STOWAGE_LOG_LEVEL ?? 'warn' }),
      });
      const scheduler = startScheduler(server.context);
      installGracefulRestart(server, { stop: [scheduler] });
      // who serves now (a graceful restart replaces the process): `kill $(cat …/server.pid)`
      // stops the server, and `npm start` follows the new process through it
      const pidFile = join(paths.runDir, SERVER_PID_FILE);
      replaceFile(pidFile, `${process.pid}\n`);
      process.stdout.write(`stowage server listening on ${server.url} (config ${paths.configDir})\n`);
      const stop = async (signal: string) => {
        process.stdout.write(`received ${signal}, finishing running tasks and shutting down\n`);
        await scheduler.stop();
        await server.close();
        removePidFileIfOurs(pidFile);
        process.exit(0);
      };
      process.once('SIGTERM', () => void stop('SIGTERM'));
      process.once('SIGINT', () => void stop('SIGINT'));
    });
}

/** `<run dir>/server.pid`: the pid of the process serving now. */
export const SERVER_PID_FILE = 'server.pid';

/** Remove the pid file unless a newer server process (a graceful restart) has replaced it. */
function removePidFileIfOurs(path: string): void {
  try {
    if (readFileSync(path, 'utf8').trim() === String(process.pid)) rmSync(path, { force: true });
  } catch {
    // gone already
  }
}
