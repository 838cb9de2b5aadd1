/**
 * One pull or push, inside its task, on admissions made before it (a pull's target as ingest and
 * local source as read; a push's local source as read): connect to the remote (or read the local
 * source), then `pullStore` / `pushStore`. Shared by `POST /pull`, `POST /push` and sync jobs,
 * which differ only in who owns the synced groups and how the task is named and recorded. For a
 * push, `store`/`ns` name the local source and `remote-store`/`remote-ns` the remote target.
 */
import { BackupNamespace, type ReadonlyDatastore, type WritableDatastore } from '../datastore/index.js';
import { BadRequestError, NotFoundError } from '../errors.js';
import { parseHumanByte } from '../api-types/human-byte.js';
import { RateLimiter } from '../sys/rate-limiter.js';
import { remoteConfig } from '../config/remote-config.js';
import { parseGroupFilter } from './group-filter.js';
import { LocalSyncSource } from './local-source.js';
import { pullStore, type PullStats } from './pull.js';
import { pushStore, type PushStats } from './push.js';
import type { BackupGroup } from '../datastore/index.js';
import { connectRemote } from './remote-client.js';
import { RemoteSyncSource } from './remote-source.js';
import type { SyncSource } from './sync-source.js';
import type { NamespaceRights } from './sync-rights.js';

/** What one pull needs, from `POST /pull` or a sync job (PBS's names). */
export interface PullRequest {
  store: string;
  ns?: string;
  remote?: string;
  'remote-store': string;
  'remote-ns'?: string;
  'remove-vanished'?: boolean;
  'max-depth'?: number;
  'group-filter'?: string | string[];
  'transfer-last'?: number;
  /** Pull: the most bytes per second downloaded, and the burst (PBS HumanByte, e.g. `10MiB`). */
  'rate-in'?: string;
  'burst-in'?: string;
  /** Push: the same for uploads. */
  'rate-out'?: string;
  'burst-out'?: string;
  /** PBS 4: only snapshots whose last verification succeeded. */
  'verified-only'?: boolean;
  /** PBS 4: only snapshots whose every archive is encrypted. */
  'encrypted-only'?: boolean;
  /** Pull only: sync again the target's snapshots whose last verification failed. */
  'resync-corrupt'?: boolean;
  /** PBS 4: groups synced at once (1 to 32). */
  'worker-threads'?: number;
}

/** The limiter of one direction, or undefined without a rate. */
function rateLimiter(rate: string | undefined, burst: string | undefined, dir: 'in' | 'out') {
  if (rate === undefined) return undefined;
  const r = parseHumanByte(rate, `rate-${dir}`);
  if (r <= 0) throw new BadRequestError(`rate-${dir} must be more than 0 bytes`, { param: `rate-${dir}` });
  return new RateLimiter(r, burst === undefined ? r : Math.max(1, parseHumanByte(burst, `burst-${dir}`)));
}

/** What both directions take as it is: the snapshot flags and the groups synced at once. */
function sharedOptions(req: PullRequest) {
  return {
    verifiedOnly: req['verified-only'] ?? false,
    encryptedOnly: req['encrypted-only'] ?? false,
    ...(req['worker-threads'] !== undefined && { workerThreads: req['worker-threads'] }),
  };
}

/** The checked namespaces and filters of a pull (400 naming the bad parameter). */
export function checkPullRequest(req: PullRequest) {
  return {
    ns: BackupNamespace.parse(req.ns ?? '', 'ns'),
    sourceNs: BackupNamespace.parse(req['remote-ns'] ?? '', 'remote-ns'),
    groupFilter: (req['group-filter'] === undefined ? [] : [req['group-filter']].flat()).map((f) =>
      parseGroupFilter(f),
    ),
    rateIn: rateLimiter(req['rate-in'], req['burst-in'], 'in'),
    rateOut: rateLimiter(req['rate-out'], req['burst-out'], 'out'),
  };
}

export interface RunPullOptions {
  configDir: string;
  /** The admitted target. */
  target: WritableDatastore;
  /** The admitted local source (a pull without `remote`). */
  source?: ReadonlyDatastore;
  owner: string;
  log(line: string): void;
  signal?: AbortSignal;
  /** The owner's rights on target namespaces (creating them, removing vanished ones). */
  namespaceRights?: NamespaceRights;
}

export async function runPull(req: PullRequest, opts: RunPullOptions): Promise<PullStats> {
  const params = checkPullRequest(req);
  let source: SyncSource;
  if (req.remote !== undefined) {
    const remote = remoteConfig(opts.configDir).get(req.remote);
    if (!remote) throw new NotFoundError(`remote '${req.remote}' does not exist`);
    source = new RemoteSyncSource(await connectRemote(remote), remote.name, req['remote-store']);
  } else {
    if (!opts.source) throw new NotFoundError(`datastore '${req['remote-store']}' was not admitted`);
    source = new LocalSyncSource(opts.source);
  }
  const { rateIn, rateOut: _out, ...rest } = params;
  return pullStore(source, opts.target, {
    ...rest,
    ...(rateIn && { rateLimit: rateIn }),
    ...(req['max-depth'] !== undefined && { maxDepth: req['max-depth'] }),
    ...(req['transfer-last'] !== undefined && { transferLast: req['transfer-last'] }),
    owner: opts.owner,
    removeVanished: req['remove-vanished'] ?? false,
    ...sharedOptions(req),
    resyncCorrupt: req['resync-corrupt'] ?? false,
    log: opts.log,
    ...(opts.signal && { signal: opts.signal }),
    ...(opts.namespaceRights && { namespaceRights: opts.namespaceRights }),
  });
}

export interface RunPushOptions {
  configDir: string;
  /** The admitted local source. */
  source: ReadonlyDatastore;
  mayPush?(group: BackupGroup): boolean;
  log(line: string): void;
  signal?: AbortSignal;
}

/** One push (the same request shape; `remote` required), inside its task, on the admitted source. */
export async function runPush(req: PullRequest, opts: RunPushOptions): Promise<PushStats> {
  const params = checkPullRequest(req);
  if (req.remote === undefined) throw new NotFoundError('a push needs a remote');
  const remote = remoteConfig(opts.configDir).get(req.remote);
  if (!remote) throw new NotFoundError(`remote '${req.remote}' does not exist`);
  const api = await connectRemote(remote);
  return pushStore(
    opts.source,
    { api, remoteName: remote.name, store: req['remote-store'] },
    {
      ns: params.ns,
      remoteNs: params.sourceNs,
      groupFilter: params.groupFilter,
      ...(req['max-depth'] !== undefined && { maxDepth: req['max-depth'] }),
      ...(req['transfer-last'] !== undefined && { transferLast: req['transfer-last'] }),
      removeVanished: req['remove-vanished'] ?? false,
      ...sharedOptions(req),
      ...(params.rateOut && { rateLimit: params.rateOut }),
      ...(opts.mayPush && { mayPush: opts.mayPush }),
      log: opts.log,
      ...(opts.signal && { signal: opts.signal }),
    },
  );
}
