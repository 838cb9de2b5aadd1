/** `stowage server`: run the HTTPS server (API, protocols, web UI, scheduler). */
import type { Command } from 'commander';
import { readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { pino } from 'pino';
import { resolvePaths } from '../../config/paths.js';
import { replaceFile } from '../../sys/atomic-file.js';
import { startServer } from '../../server/server.js';
import { schedulerOptionsFromEnv, startScheduler } from '../../jobs/scheduler.js';
import { EtcdSchedulerLeadership } from '../../jobs/etcd-scheduler-leadership.js';
import { inheritedListenFd, installGracefulRestart } from '../../server/restart.js';
import { parseHostPort } from './admin-connection.js';
import { ensureQuickstartDatastore } from './quickstart.js';
import { keepRunningWhenOutputCloses } from '../pipe-closed.js';
import { BadRequestError } from '../../errors.js';
import {
  DEFAULT_LEASE_TTL_SECONDS,
  clusterSettingsFromOptions,
  writeInstanceClusterSettings,
  type ClusterOptionValues,
} from '../../cluster/cluster-settings.js';
import { stallKillAfterMs, startEventLoopWatchdog } from '../../sys/event-loop-watchdog.js';

/** The cluster options are those clusterSettingsFromOptions reads (cluster-settings.ts). */
interface ServerOptions extends ClusterOptionValues {
  listen: string;
  configDir?: string;
  dataDir?: string;
  runDir?: string;
  quickstart?: boolean;
  shutdownGrace: string;
}

/**
 * Below systemd's default stop timeout (90 s), so a stop ends in an orderly abort (tasks marked
 * aborted, sessions' snapshots removed) rather than a SIGKILL.
 */
const DEFAULT_SHUTDOWN_GRACE_S = 60;
/** After the abort, how long the aborted tasks get to record their end before the process exits. */
const ABORT_SETTLE_MS = 5_000;

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
    .option(
      '--shutdown-grace <seconds>',
      'on SIGTERM/SIGINT, how long running tasks and backup sessions may take to finish before they are aborted (env STOWAGE_SHUTDOWN_GRACE)',
      process.env.STOWAGE_SHUTDOWN_GRACE ?? String(DEFAULT_SHUTDOWN_GRACE_S),
    )
    // cluster mode (docs/cluster.md): without --cluster nothing of it applies
    .option(
      '--cluster <etcd-url>',
      "cluster mode: etcd://HOST:PORT[,HOST:PORT...][/PREFIX], the etcd members that hold the cluster's datastore configuration, modes and operations (env STOWAGE_CLUSTER)",
      process.env.STOWAGE_CLUSTER,
    )
    .option(
      '--node <name>',
      "this server's name in the cluster (env STOWAGE_NODE; default: the host name)",
      process.env.STOWAGE_NODE,
    )
    .option(
      '--cluster-ca <file>',
      "CA certificate of etcd's TLS; https to etcd (env STOWAGE_CLUSTER_CA)",
      process.env.STOWAGE_CLUSTER_CA,
    )
    .option(
      '--cluster-cert <file>',
      'client certificate for etcd (env STOWAGE_CLUSTER_CERT)',
      process.env.STOWAGE_CLUSTER_CERT,
    )
    .option(
      '--cluster-key <file>',
      "the client certificate's key (env STOWAGE_CLUSTER_KEY)",
      process.env.STOWAGE_CLUSTER_KEY,
    )
    .option(
      '--cluster-lease-ttl <seconds>',
      `how long a dead or cut-off server's operations keep counting (env STOWAGE_CLUSTER_LEASE_TTL; default ${DEFAULT_LEASE_TTL_SECONDS})`,
      process.env.STOWAGE_CLUSTER_LEASE_TTL,
    )
    .action(async (_o, cmd: Command) => {
      // --config-dir is a global option: the admin commands need it too
      const opts = cmd.optsWithGlobals() as ServerOptions;
      const graceS = Number(opts.shutdownGrace);
      if (!/^\d+$/.test(opts.shutdownGrace) || !Number.isSafeInteger(graceS)) {
        throw new BadRequestError(
          `--shutdown-grace: '${opts.shutdownGrace}' is not a whole number of seconds`,
        );
      }
      const cluster = clusterSettingsFromOptions(opts);
      keepRunningWhenOutputCloses();
      const paths = resolvePaths({
        ...(opts.configDir && { configDir: opts.configDir }),
        ...(opts.dataDir && { dataDir: opts.dataDir }),
        ...(opts.runDir && { runDir: opts.runDir }),
      });
      // after a graceful restart (SIGHUP) the listening socket is inherited from the old process
      const fd = inheritedListenFd();
      // the instance's other processes (admin commands without a server) follow the server's mode
      writeInstanceClusterSettings(paths.configDir, cluster);
      if (opts.quickstart && fd === undefined) {
        await ensureQuickstartDatastore(paths, (l) => process.stdout.write(l + '\n'));
      }
      // a stuck event loop is reported, and ended after STOWAGE_STALL_KILL_SECONDS (default 120)
      startEventLoopWatchdog({ killAfterMs: stallKillAfterMs() });
      const schedulerOpts = schedulerOptionsFromEnv();
      const server = await startServer({
        listen: fd !== undefined ? { fd } : parseHostPort(opts.listen),
        paths,
        cluster: cluster ?? false,
        logger: pino({ level: process.env.STOWAGE_LOG_LEVEL ?? 'warn' }),
      });
      // in a cluster the servers elect the one that runs the jobs (docs/cluster.md)
      const { cluster: inCluster } = server.context;
      const scheduler = startScheduler(server.context, {
        ...schedulerOpts,
        ...(inCluster && {
          leadership: new EtcdSchedulerLeadership({
            client: inCluster.client,
            prefix: inCluster.settings.prefix,
            node: inCluster.node,
            ttlSeconds: inCluster.settings.leaseTtlSeconds,
            log: server.context.log,
          }),
        }),
      });
      installGracefulRestart(server, { stop: [scheduler] });
      // who serves now (a graceful restart replaces the process): `kill $(cat …/server.pid)`
      // stops the server, and `npm start` follows the new process through it
      const pidFile = join(paths.runDir, SERVER_PID_FILE);
      replaceFile(pidFile, `${process.pid}\n`);
      process.stdout.write(
        `stowage server listening on ${server.url} (config ${paths.configDir}` +
          (cluster
            ? `; cluster node ${cluster.node} on ${cluster.endpoints.join(',')}${cluster.prefix}`
            : '') +
          ')\n',
      );
      // SIGTERM/SIGINT: stop accepting, let running tasks and sessions finish for the grace
      // period, then abort them; a second signal exits at once. A stop therefore always ends.
      let stopping = false;
      const stop = async (signal: string) => {
        if (stopping) {
          process.stdout.write(`received ${signal} again, exiting now\n`);
          removePidFileIfOurs(pidFile);
          process.exit(1);
        }
        stopping = true;
        const running = server.context.tasks.activeCount;
        process.stdout.write(
          `received ${signal}, shutting down` +
            (running > 0 ? ` - waiting up to ${graceS} s for ${running} running task(s)` : '') +
            '\n',
        );
        const grace = setTimeout(() => {
          const aborted = server.context.tasks.abortAll();
          process.stdout.write(`grace period of ${graceS} s over: aborted ${aborted} running task(s)\n`);
          setTimeout(() => {
            removePidFileIfOurs(pidFile);
            process.exit(1);
          }, ABORT_SETTLE_MS).unref();
        }, graceS * 1000);
        await scheduler.stop();
        await server.close();
        clearTimeout(grace);
        removePidFileIfOurs(pidFile);
        process.exit(0);
      };
      process.on('SIGTERM', () => void stop('SIGTERM'));
      process.on('SIGINT', () => void stop('SIGINT'));
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
