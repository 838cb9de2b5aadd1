/**
 * Entry point of the backup and reader protocols on the HTTPS server: the `upgrade` listener.
 *
 *   GET /api2/json/backup?store&backup-type&backup-id&backup-time[&ns]   Upgrade: proxmox-backup-protocol-v1
 *   GET /api2/json/reader?store&backup-type&backup-id&backup-time[&ns]   Upgrade: proxmox-backup-reader-protocol-v1
 *
 * Order of checks, as PBS (reference §8.2, §8.3): authentication; privilege (Datastore.Backup;
 * the reader: Datastore.Read, or Datastore.Backup plus ownership); admission by
 * `lookupDatastore` (write for a backup, read for a reader) — so a datastore in maintenance
 * refuses with 503 and its message *before* any 101; the protocol name; then the session's own
 * checks (namespace, group lock and owner, base snapshot, time, snapshot dir). Only then 101 and
 * HTTP/2. The admission is one operation for the whole session and is released on every exit
 * path: a refusal after admission, a failed upgrade, the connection's end.
 *
 * Each session runs as a worker task (`backup` / `reader`) whose log tells what happened and
 * whose status tells whether the backup finished; aborting the task ends the session.
 */
import { datastoreAclPath } from '../http/permissions.js';
import type { IncomingMessage, Server as HttpServer } from 'node:http';
import type { Http2Session } from 'node:http2';
import { destroyHttp2Session } from '../sys/http2-destroy.js';
import type { Duplex } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Static } from 'typebox';
import {
  BadRequestError,
  ERR_BACKUP_NOT_FINISHED,
  isStowageError,
  ProtocolHttpError,
  UnauthorizedError,
  type StowageError,
} from '../errors.js';
import { BackupDir, BackupGroup, BackupNamespace } from '../datastore/index.js';
import { isBackupOwner } from '../config/user-config.js';
import { checkParams, queryParams } from '../http/parameters.js';
import type {
  DatastoreAccess,
  DatastoreHandle,
  ReadHandle,
  WriteHandle,
} from '../maintenance/datastore-access.js';
import { authenticate } from '../http/auth/authenticate.js';
import type { ServerContext } from '../http/context.js';
import type { WorkerTask } from '../tasks/worker-task.js';
import { openBackupSession, type SessionLog } from './backup-session.js';
import {
  errorMessage,
  serveRoutes,
  upgradeToHttp2,
  writeHttp1Error,
  type H2Route,
  type H2Routes,
} from './h2-session.js';
import { BackupUpgradeParams, ReaderUpgradeParams } from './protocol-schemas.js';
import { ReaderSession } from './reader-session.js';
import { BACKUP_PATH, BACKUP_PROTOCOL_ID, READER_PATH, READER_PROTOCOL_ID } from '../api-types/protocol.js';

export interface ProtocolDeps {
  context: ServerContext;
  /** Admission for the sessions; default the server's own (`context.datastores`). */
  access?: DatastoreAccess;
}

/**
 * Register the protocols on the server's `upgrade` event. Call once in `startServer`, after
 * creating the context: `attachProtocolUpgrade(app.server, { context })`. Every request carrying an `Upgrade` header reaches this
 * listener; paths other than the two protocols are answered 404.
 */
export function attachProtocolUpgrade(server: Pick<HttpServer, 'on'>, deps: ProtocolDeps): void {
  server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    socket.on('error', () => {}); // a reset peer must not crash the server; the session sees 'close'
    handleProtocolUpgrade(req, socket, head, deps).catch((err: unknown) => {
      deps.context.log.error({ err }, 'protocol upgrade failed');
      socket.destroy();
    });
  });
}

/** A task log that holds lines until the task function runs (it starts on the next tick). */
class DeferredLog implements SessionLog {
  private task: WorkerTask | undefined;
  private queue: Array<[boolean, string]> = [];

  attach(task: WorkerTask): void {
    this.task = task;
    for (const [warn, line] of this.queue) this.write(warn, line);
    this.queue = [];
  }

  private write(warn: boolean, line: string): void {
    if (!this.task) this.queue.push([warn, line]);
    else if (warn) this.task.warn(line);
    else this.task.log(line);
  }

  log(message: string): void {
    this.write(false, message);
  }

  warn(message: string): void {
    this.write(true, message);
  }
}

interface SessionParams {
  store: string;
  dir: BackupDir;
  ns: BackupNamespace;
  /** `benchmark=1` (only on `host/benchmark`): the data is not kept. */
  benchmark: boolean;
}

/** The upgrade's query parameters, checked against PBS's schema of the protocol. */
function parseSessionParams(kind: 'backup' | 'reader', q: URLSearchParams): SessionParams {
  const p: Static<typeof ReaderUpgradeParams> & { benchmark?: boolean } =
    kind === 'backup'
      ? checkParams(BackupUpgradeParams, queryParams(q))
      : checkParams(ReaderUpgradeParams, queryParams(q));
  const ns = BackupNamespace.parse(p.ns ?? '', 'ns');
  const dir = new BackupDir(new BackupGroup(ns, p['backup-type'], p['backup-id']), p['backup-time']);
  return { store: p.store, ns, dir, benchmark: p.benchmark ?? false };
}

/** PBS: `host/benchmark` is written only with `benchmark=1`, and `benchmark=1` only there. */
function checkBenchmark(params: SessionParams): void {
  const group = params.dir.group;
  const isBenchmarkGroup = group.type === 'host' && group.id === 'benchmark';
  if (isBenchmarkGroup && !params.benchmark)
    throw new BadRequestError('unable to run benchmark without --benchmark flags');
  if (!isBenchmarkGroup && params.benchmark)
    throw new BadRequestError("benchmark flags is only allowed on 'host/benchmark'");
}

/**
 * The checks before a session, in PBS's order: parameters (400), privileges (403; a reader
 * without either privilege gets PBS's plain 400), the datastore admission (maintenance 503,
 * unknown store 404). The caller releases the handle.
 */
async function admitSession(
  kind: 'backup' | 'reader',
  authId: string,
  query: URLSearchParams,
  deps: ProtocolDeps,
): Promise<{ params: SessionParams; readPriv: boolean; handle: DatastoreHandle }> {
  const params = parseSessionParams(kind, query);
  const info = deps.context.userInfo.get();
  const path = datastoreAclPath(params.store, params.ns);
  let readPriv = false;
  if (kind === 'backup') info.checkPrivs(authId, path, ['Datastore.Backup']);
  else {
    readPriv = info.hasPrivs(authId, path, ['Datastore.Read']);
    // PBS answers this one with a plain 400, not the 403 of the backup upgrade
    if (!readPriv && !info.hasPrivs(authId, path, ['Datastore.Backup']))
      throw new BadRequestError(`no permissions on ${path}`);
  }
  const handle = await (deps.access ?? deps.context.datastores).lookupDatastore(
    params.store,
    kind === 'backup' ? 'ingest' : 'read',
    { kind, detail: params.dir.toString(), authId },
  );
  return { params, readPriv, handle };
}

/**
 * A GET of the protocol path without `Upgrade` (PBS routes the upgrade as a GET): the same checks
 * as an upgrade, then PBS's 400 `missing Upgrade header`, never a session.
 */
export async function refuseWithoutUpgrade(
  kind: 'backup' | 'reader',
  authId: string,
  query: URLSearchParams,
  deps: ProtocolDeps,
): Promise<never> {
  const { handle } = await admitSession(kind, authId, query, deps);
  await handle.release();
  throw new BadRequestError('missing Upgrade header');
}

/** Handle one upgrade request end to end; resolves when the session is over. */
export async function handleProtocolUpgrade(
  req: IncomingMessage,
  socket: Duplex,
  head: Buffer,
  deps: ProtocolDeps,
): Promise<void> {
  const ctx = deps.context;
  const url = new URL(req.url ?? '/', 'https://localhost');
  const kind = url.pathname === BACKUP_PATH ? 'backup' : url.pathname === READER_PATH ? 'reader' : undefined;
  let handle: DatastoreHandle | undefined;
  try {
    if (!kind) throw new ProtocolHttpError('NOT_FOUND', `Path '${url.pathname}' not found.`);
    if (req.method !== 'GET')
      throw new BadRequestError(`method ${req.method} not allowed for protocol upgrade`);
    let authId: string;
    try {
      authId = authenticate(ctx, 'GET', req.headers).authId;
    } catch (err) {
      if (err instanceof UnauthorizedError) await sleep(ctx.authFailureDelayMs);
      throw err;
    }
    const admitted = await admitSession(kind, authId, url.searchParams, deps);
    handle = admitted.handle;
    const { params, readPriv } = admitted;
    const expected = kind === 'backup' ? BACKUP_PROTOCOL_ID : READER_PROTOCOL_ID;
    if (req.headers.upgrade !== expected) throw new BadRequestError('invalid protocol name');
    if (req.httpVersionMajor >= 2)
      throw new BadRequestError(`unexpected http version '${req.httpVersion}' (expected version < 2)`);
    const upgrade = { req, socket, head, deps, params, authId };
    // a backup is admitted as ingest, a reader as read: the reader gets a read-only datastore
    if (handle.operation !== 'read') await runBackup({ ...upgrade, handle });
    else await runReader({ ...upgrade, handle }, readPriv);
  } catch (err) {
    writeHttp1Error(socket, err);
  } finally {
    await handle?.release();
  }
}

/**
 * How long a session ended by a maintenance mode stays connected to answer the client's next
 * requests with the refusal (so the client prints the mode's message, not "connection lost").
 * The session's work and its admission end at once; only the connection lingers.
 */
const REFUSAL_GRACE_MS = 10_000;

/** `routes` answering with `refusal()` once it is set, also for requests already in flight. */
function refusingRoutes(routes: H2Routes, refusal: () => StowageError | undefined): H2Routes {
  const guard = (route: H2Route): H2Route => ({
    ...route,
    handler: async (params, req) => {
      const before = refusal();
      if (before) throw before;
      try {
        return await route.handler(params, req);
      } catch (err) {
        throw refusal() ?? err;
      }
    },
  });
  return new Map([...routes].map(([key, route]) => [key, guard(route)]));
}

/**
 * After the session's own checks: spawn the task, upgrade, serve until the connection ends.
 * `end` runs exactly once, whatever ends the session.
 *
 * Aborting the task ends the session. An abort with a reason (a maintenance mode that ends
 * conflicting operations, `abort-conflicting`) ends the session's work at once — `end` removes
 * an unfinished snapshot, the admission is released — and answers every further request with the
 * reason for a short while, so the client fails with the mode's message; the task fails with it.
 */
async function serveSession(
  socket: Duplex,
  head: Buffer,
  deps: ProtocolDeps,
  opts: {
    protocol: string;
    workerType: string;
    workerId: string;
    authId: string;
    log: DeferredLog;
    routes: H2Routes;
    end: () => void;
    /** The task's status: throw to end it as an error. */
    outcome: () => void;
    /** The session's admitted operation: it records the session's task. */
    handle: DatastoreHandle;
  },
): Promise<void> {
  let session: Http2Session | undefined;
  let refusal: StowageError | undefined;
  let resolveEnded!: () => void;
  const ended = new Promise<void>((r) => (resolveEnded = r));
  let endedOnce = false;
  const finish = () => {
    if (endedOnce) return;
    endedOnce = true;
    try {
      opts.end();
    } finally {
      resolveEnded();
    }
  };
  const close = () => {
    if (session) destroyHttp2Session(session);
    else socket.destroy();
  };
  const upid = deps.context.tasks.spawnTask(opts.workerType, opts.workerId, opts.authId, async (task) => {
    opts.log.attach(task);
    const abort = () => {
      const reason: unknown = task.signal.reason;
      if (isStowageError(reason) && session) {
        refusal = reason;
        finish();
        setTimeout(close, REFUSAL_GRACE_MS).unref();
        return;
      }
      task.log('abort requested - closing session');
      close();
    };
    // an abort requested before this function ran (it starts on the next event-loop turn)
    if (task.signal.aborted) abort();
    else task.signal.addEventListener('abort', abort, { once: true });
    try {
      await ended;
    } finally {
      task.signal.removeEventListener('abort', abort);
    }
    if (refusal) throw refusal;
    opts.outcome();
  });
  opts.handle.attachTask(upid);
  try {
    socket.once('close', finish);
    session = await upgradeToHttp2(socket, head, opts.protocol);
    session.on('error', (err) => opts.log.log(`connection error: ${err.message}`));
    session.once('close', finish);
    serveRoutes(
      session,
      refusingRoutes(opts.routes, () => refusal),
      (r, err) => opts.log.log(`${r.method} /${r.name}: ${errorMessage(err)}`),
    );
  } catch (err) {
    opts.log.log(`upgrade failed: ${errorMessage(err)}`);
    socket.destroy();
    finish();
  }
  await ended;
}

/** An upgrade request that passed authentication, privileges and admission. */
interface AdmittedUpgrade<H extends DatastoreHandle = DatastoreHandle> {
  req: IncomingMessage;
  socket: Duplex;
  head: Buffer;
  deps: ProtocolDeps;
  handle: H;
  params: SessionParams;
  authId: string;
}

/**
 * Log PBS's session start line; returns the namespace prefix (`a/b/`, empty for the root) that
 * the line and the worker id put before the snapshot.
 */
function logSessionStart(log: DeferredLog, what: 'backup' | 'reader', u: AdmittedUpgrade): string {
  const { params } = u;
  const nsPrefix = params.ns.isRoot() ? '' : `${params.ns.name}/`;
  log.log(
    `starting new ${what} on datastore '${params.store}' from ${u.req.socket.remoteAddress ?? 'unknown'}: "${nsPrefix}${params.dir}"`,
  );
  return nsPrefix;
}

async function runBackup(u: AdmittedUpgrade<WriteHandle>): Promise<void> {
  const { params, authId } = u;
  const log = new DeferredLog();
  checkBenchmark(params);
  // Namespace, group lock + owner, base, time and snapshot dir are checked in there (§8.2 4-8).
  const session = await openBackupSession(u.handle.datastore, params.dir, authId, log, {
    benchmark: params.benchmark,
  });
  const nsPrefix = logSessionStart(log, 'backup', u);
  await serveSession(u.socket, u.head, u.deps, {
    handle: u.handle,
    protocol: BACKUP_PROTOCOL_ID,
    workerType: params.benchmark ? 'benchmark' : 'backup',
    workerId: `${params.store}:${nsPrefix}${params.dir.group}`,
    authId,
    log,
    routes: session.routes(),
    end: () => session.end(),
    outcome: () => {
      if (!session.finished) {
        throw ERR_BACKUP_NOT_FINISHED();
      }
    },
  });
}

async function runReader(u: AdmittedUpgrade<ReadHandle>, readPriv: boolean): Promise<void> {
  const { params, authId } = u;
  const ds = u.handle.datastore;
  // PBS's words, and a plain 400 for both (src/api2/reader/mod.rs)
  const missing = new BadRequestError(`snapshot ${params.dir} does not exist.`);
  if (!ds.groupExists(params.dir.group)) throw missing;
  if (!readPriv && !isBackupOwner(ds.getOwner(params.dir.group), authId))
    throw new BadRequestError('backup owner check failed!');
  const snapshot = ds.openSnapshotReader(params.dir);
  const snap = ds.listSnapshots(params.dir.group).find((s) => s.dir.time === params.dir.time);
  if (!snap) throw missing;
  const lock = await ds.locks.tryLockSnapshot(params.dir, 'snapshot is being removed or written', {
    shared: true,
  });
  const log = new DeferredLog();
  const session = new ReaderSession({ datastore: ds, dir: params.dir, snapshot, lock, log });
  const nsPrefix = logSessionStart(log, 'reader', u);
  const hexTime = params.dir.time.toString(16).toUpperCase().padStart(8, '0');
  await serveSession(u.socket, u.head, u.deps, {
    handle: u.handle,
    protocol: READER_PROTOCOL_ID,
    workerType: 'reader',
    workerId: `${params.store}:${nsPrefix}${params.dir.group}/${hexTime}`,
    authId,
    log,
    routes: session.routes(),
    end: () => session.end(),
    outcome: () => {},
  });
}
