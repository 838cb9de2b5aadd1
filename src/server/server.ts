/**
 * `startServer`: fastify over HTTPS (port 8007 by default, as PBS), serving the API routes of
 * `src/api2/index.ts`. On first start it creates the TLS certificate, the ticket signing keys and
 * root@pam (password from `STOWAGE_ROOT_PASSWORD`, or generated and printed once).
 */
import { startSyncfsHelper } from '../sys/syncfs.js';
import Fastify, {
  type FastifyBaseLogger,
  type FastifyError,
  type FastifyInstance,
  type FastifyReply,
  type FastifyRequest,
} from 'fastify';
import { mkdirSync } from 'node:fs';
import { maxHeaderSize as httpMaxHeaderSize } from 'node:http';
import type { Duplex } from 'node:stream';
import { join } from 'node:path';
import { apiRoutes } from '../api2/index.js';
import { loadOrCreateAuthKeys } from '../http/auth/auth-keys.js';
import { errorEnvelope, reasonPhrase } from '../http/error-envelope.js';
import { LoginLimiter, type LoginLimiterOptions } from '../http/auth/login-limiter.js';
import { bootstrapRootUser } from './bootstrap.js';
import type { ServerContext, ServerPaths } from '../http/context.js';
import { openInstanceDatastores } from '../maintenance/open-datastore-access.js';
import type { ClusterSettings } from '../cluster/cluster-settings.js';
import { abortOnLeaseLoss } from '../cluster/lease-loss.js';
import { ClusterConfigSync } from '../cluster/config-sync.js';
import { resolveClusterSettings } from '../cluster/cluster-settings.js';
import type { ChunkBackendOpener } from '../maintenance/datastore-access.js';
import { attachProtocolUpgrade } from '../protocol/upgrade.js';
import { UserInfoCache } from '../http/permissions.js';
import { registerRoutes } from '../http/register-routes.js';
import type { AnyRoute } from '../http/route.js';
import { TaskManager } from '../tasks/worker-task.js';
import { ensureCertificate } from '../http/tls.js';
import { registerWebUi } from './web-ui.js';
import { removeAbandonedSnapshotsAtStartup } from './startup-cleanup.js';
import { registerMetrics } from '../notifications/metrics.js';
import { Notifier, type NotifierOptions } from '../notifications/notifier.js';
import { startDrainMonitor } from '../maintenance/drain-monitor.js';
import { lowSpaceIntervalMs, startLowSpaceMonitor } from '../maintenance/low-space-monitor.js';

export const DEFAULT_PORT = 8007;

export interface StartServerOptions {
  /** Where to listen; `fd` is a listening socket inherited from the process being replaced (restart). */
  listen?: { host?: string; port?: number; fd?: number };
  paths: ServerPaths;
  /** A pino-compatible logger; default: fastify's own at level `info`. `false` silences it. */
  logger?: FastifyBaseLogger | false;
  /** Where the one-time lines (fingerprint, generated password) go; default stdout. */
  announce?: (line: string) => void;
  /** Password for a newly created root@pam; default `$STOWAGE_ROOT_PASSWORD`, else generated. */
  rootPassword?: string;
  /** Delay before answering a failed authentication; default 3000 ms as PBS. */
  authFailureDelayMs?: number;
  loginLimit?: LoginLimiterOptions;
  /** Routes to serve; default all of `src/api2/index.ts`. */
  routes?: readonly AnyRoute[];
  /** Node name in UPIDs; default the short hostname. */
  nodeName?: string;
  /** How datastores' chunk backends are opened (fault injection in tests); default from the config. */
  openChunks?: ChunkBackendOpener;
  /**
   * Cluster mode (docs/cluster.md): datastores admitted and configured through the cluster's etcd.
   * Default: as `<config dir>/cluster.json` says (absent: the host's own datastore.cfg).
   */
  cluster?: ClusterSettings | false;
  /** Notification delivery timing (poll interval, retries); tests shorten it. */
  notifier?: Pick<NotifierOptions, 'pollMs' | 'maxAttempts' | 'backoffMs'>;
}

export interface RunningServer {
  /** `https://host:port` */
  url: string;
  /** SHA-256 certificate fingerprint, `aa:bb:...`. */
  fingerprint: string;
  context: ServerContext;
  /**
   * The start-up removal of abandoned unfinished snapshots (startup-cleanup.ts), running in the
   * background once the server listens; it never rejects.
   */
  startupCleanup: Promise<void>;
  /**
   * Stop accepting connections, then wait for this process's running tasks to end (they are not
   * aborted: a server being replaced finishes its work).
   */
  close(): Promise<void>;
}

/** node's limit on the request line plus headers (`--max-http-header-size`, 16 KiB by default). */
const HEAD_LIMIT_KIB = Math.round(httpMaxHeaderSize / 1024);

/**
 * A request node's parser refused, answered with the envelope every other error on `/api2/json`
 * has: 414 when the request line overflowed node's limit on a request head (a URL with a huge
 * query), 431 when the headers did, 408 for a client too slow to send its head, else 400. The
 * connection is closed after, as node does.
 */
function answerClientError(err: Error & { code?: string; rawPacket?: unknown }, socket: Duplex): void {
  if (err.code === 'ECONNRESET' || socket.destroyed) return;
  let status = 400;
  let message = 'malformed HTTP request';
  if (err.code === 'ERR_HTTP_REQUEST_TIMEOUT') {
    status = 408;
    message = 'request timeout: the request head was not received in time';
  } else if (err.code === 'HPE_HEADER_OVERFLOW') {
    // node hands over only the packet that overflowed: the request line is too long when that
    // packet holds the end of a request line that started in an earlier packet, or a request line
    // longer than half the limit
    const packet = Buffer.isBuffer(err.rawPacket) ? err.rawPacket.toString('latin1') : '';
    const firstLine = packet.split('\r\n', 1)[0]!;
    const endsRequestLine = packet.includes('\r\n') && / HTTP\/1\.[01]$/.test(firstLine);
    const startsRequest = /^[A-Z]+ \S/.test(packet);
    if (endsRequestLine && (!startsRequest || firstLine.length > httpMaxHeaderSize / 2)) {
      status = 414;
      message = `URI too long: the request line is longer than node's ${HEAD_LIMIT_KIB} KiB limit on a request head`;
    } else {
      status = 431;
      message = `request headers too large: more than the ${HEAD_LIMIT_KIB} KiB limit on a request head`;
    }
  }
  const body = JSON.stringify({ data: null, message });
  if (socket.writable) {
    socket.write(
      `HTTP/1.1 ${status} ${reasonPhrase(message)}\r\nContent-Type: application/json;charset=UTF-8\r\n` +
        `Content-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`,
    );
  }
  socket.destroy();
}

/** Fastify options every assembly of the API shares (the HTTPS server and the in-process one). */
export const API_FASTIFY_OPTIONS = {
  bodyLimit: 1024 * 1024,
  // errors node's HTTP parser raises before fastify sees a request (an over-long URL or header
  // block, a malformed request) also get the envelope, not fastify's own body
  clientErrorHandler: answerClientError,
  // UPIDs in task URLs are longer than fastify's default of 100 characters
  routerOptions: { maxParamLength: 1024 },
  // errors fastify raises before routing (an overlong or undecodable path component) get the
  // same envelope as every other error, not fastify's own body
  frameworkErrors: (err: FastifyError, _request: FastifyRequest, reply: FastifyReply) => {
    const env = errorEnvelope(
      err.code === 'FST_ERR_MAX_PARAM_LENGTH'
        ? Object.assign(new Error('URI too long: a path component is longer than 1024 characters'), {
            statusCode: 414,
          })
        : err,
    );
    reply.raw.statusMessage = reasonPhrase(env.body.message);
    void reply.status(env.status).send(env.body);
  },
};

export interface AssembleApiOptions {
  paths: ServerPaths;
  keys: ServerContext['keys'];
  nodeName?: string;
  loginLimit?: LoginLimiterOptions;
  authFailureDelayMs?: number;
  routes?: readonly AnyRoute[];
  openChunks?: ChunkBackendOpener;
  cluster?: ClusterSettings | false;
}

/**
 * The API on `app`: tasks, datastore access and every route, with their context. The HTTPS server
 * adds the protocols, the web UI and a listening socket; the admin CLI uses it in-process when no
 * server runs (src/server/in-process-api.ts).
 */
export async function assembleApi(app: FastifyInstance, opts: AssembleApiOptions): Promise<ServerContext> {
  const { access, cluster } = await openInstanceDatastores(opts.paths, {
    openChunks: opts.openChunks,
    cluster: opts.cluster,
  });
  const context: ServerContext = {
    paths: opts.paths,
    keys: opts.keys,
    userInfo: new UserInfoCache(opts.paths.configDir),
    // in a cluster, UPIDs name the node as the cluster knows it
    tasks: new TaskManager({
      tasksDir: join(opts.paths.dataDir, 'tasks'),
      node: opts.nodeName ?? cluster?.node,
    }),
    datastores: access,
    ...(cluster && { cluster }),
    loginLimiter: new LoginLimiter(opts.loginLimit),
    authFailureDelayMs: opts.authFailureDelayMs ?? 3000,
    log: app.log,
  };
  // operations whose cluster lease expired must not go on (src/cluster/lease-loss.ts)
  if (cluster) abortOnLeaseLoss(cluster, access, context.tasks, app.log);
  await registerRoutes(app, opts.routes ?? apiRoutes, context);
  return context;
}

/** Start the HTTPS API server. */
export async function startServer(opts: StartServerOptions): Promise<RunningServer> {
  const { paths } = opts;
  for (const dir of [paths.configDir, paths.dataDir, paths.runDir]) mkdirSync(dir, { recursive: true });
  const announce = opts.announce ?? ((line: string) => process.stdout.write(line + '\n'));
  // forked now, while the server is small (src/sys/syncfs.ts)
  startSyncfsHelper();

  // in a cluster, the shared configuration (users, keys, jobs…) is brought in step before any
  // of it is read (src/cluster/config-sync.ts)
  const clusterSettings = resolveClusterSettings(paths.configDir, opts.cluster);
  const configSync = clusterSettings ? await ClusterConfigSync.start(clusterSettings, paths) : undefined;
  const tls = await ensureCertificate(paths.configDir);
  let keys = await loadOrCreateAuthKeys(paths.configDir);
  const boot = await bootstrapRootUser(
    paths.configDir,
    opts.rootPassword ?? process.env.STOWAGE_ROOT_PASSWORD,
  );
  let passwordLine = boot.generatedPassword && `root@pam password: ${boot.generatedPassword}`;
  if (configSync) {
    // servers started together each created keys (and root's password): one copy wins, all use it
    const { adopted } = await configSync.seedCreated();
    keys = await loadOrCreateAuthKeys(paths.configDir);
    // the password generated here lost to another server's: printing it would mislead
    if (passwordLine && adopted.has('shadow.json'))
      passwordLine = 'root@pam password: set by another server of the cluster';
  }

  const app = Fastify({
    https: { key: tls.key, cert: tls.cert },
    ...(opts.logger === undefined
      ? { logger: { level: 'info' } }
      : opts.logger === false
        ? { logger: false }
        : { loggerInstance: opts.logger }),
    ...API_FASTIFY_OPTIONS,
  });
  const context = await assembleApi(app, {
    paths,
    keys,
    nodeName: opts.nodeName,
    loginLimit: opts.loginLimit,
    authFailureDelayMs: opts.authFailureDelayMs,
    routes: opts.routes,
    openChunks: opts.openChunks,
    cluster: clusterSettings,
  });
  const { tasks, datastores } = context;
  configSync?.useLog(app.log);
  // backup and reader sessions: HTTP/1.1 upgrade, then HTTP/2 on the same TLS connection
  attachProtocolUpgrade(app.server, { context });
  await registerWebUi(app);
  registerMetrics(app, context);

  const host = opts.listen?.host ?? '0.0.0.0';
  const port = opts.listen?.port ?? DEFAULT_PORT;
  try {
    // An inherited socket (graceful restart) is used as it is; host must be an address, not a
    // name, or fastify would try to bind the name's other addresses as well.
    if (opts.listen?.fd !== undefined)
      await app.listen({ host: '127.0.0.1', ...({ fd: opts.listen.fd } as object) });
    else await app.listen({ host, port });
  } catch (err) {
    await tasks.close();
    datastores.close();
    await configSync?.close();
    throw err;
  }
  const addr = app.server.address();
  const actualPort = typeof addr === 'object' && addr ? addr.port : port;
  const urlHost = host === '0.0.0.0' || host === '::' ? 'localhost' : host.includes(':') ? `[${host}]` : host;

  announce(`fingerprint: ${tls.fingerprint}`);
  if (passwordLine) announce(passwordLine);
  // After listen, not before: walking a large datastore must not delay serving (the sessions it
  // could race hold their snapshot locks, see startup-cleanup.ts).
  const startupCleanup = removeAbandonedSnapshotsAtStartup(datastores, app.log);
  // Notifications tail the maintenance event log from now on (events before this start were
  // either notified by the previous server or are history).
  const notifier = new Notifier({
    configDir: paths.configDir,
    events: datastores.backend.events,
    log: app.log,
    ...opts.notifier,
  });
  notifier.start();
  const drainMonitor = startDrainMonitor(datastores, { log: app.log });
  const lowSpaceMonitor =
    datastores.lowSpace &&
    startLowSpaceMonitor(datastores.lowSpace, { intervalMs: lowSpaceIntervalMs(), log: app.log });

  return {
    url: `https://${urlHost}:${actualPort}`,
    fingerprint: tls.fingerprint,
    context,
    startupCleanup,
    async close() {
      await startupCleanup;
      drainMonitor.stop();
      lowSpaceMonitor?.stop();
      await notifier.close();
      await app.close();
      await tasks.close();
      datastores.close();
      await configSync?.close();
    },
  };
}
