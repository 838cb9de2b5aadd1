/**
 * The configuration every server of a cluster shares (issue 17, docs/cluster.md "Shared
 * configuration"): users, ACLs, passwords, API tokens, the ticket signing keys, remotes, job
 * definitions, maintenance windows, S3 endpoints and notification targets. Each stays a file in
 * the server's config dir, read and written as on a server alone; this module mirrors those files
 * through etcd (`P config/files/<name>`: the file's bytes and mode):
 *
 * - At start, before the server reads any of them: a file etcd has is written here; the files only
 *   this server has are put in etcd together (the first server of a cluster seeds them). A file
 *   changed here while the server was down (an admin command) is put in etcd, unless etcd's changed
 *   too (then etcd's wins, with a warning): `<dataDir>/cluster-config-sync.json` remembers what was
 *   last in step.
 * - The files the server creates at start (ticket keys, root's password on a first start) are put
 *   in etcd together by `seedCreated`; until it has run, such a file is neither put in etcd on its
 *   own nor replaced by the cluster's copy of it (servers started together each create their own,
 *   and one server's set must win whole: the two halves of a key pair from different servers, or
 *   a server's own key overwritten under it, refuse logins).
 * - While it runs: a file written here (API, admin command) is put in etcd; a change in etcd
 *   (another server's) is written here, atomically, as the file's own writers do.
 *
 * Two servers changing the same file at the same moment: the later put wins for both (one
 * change is lost, as between two admins editing one file). Files that are each server's own are
 * not mirrored: its TLS certificate, `datastore.cfg` (the datastores are in etcd already) and
 * `cluster.json`.
 */
import { createHash } from 'node:crypto';
import { readFileSync, rmSync, statSync, watch, type FSWatcher } from 'node:fs';
import { join } from 'node:path';
import { Etcd3, type Watcher } from 'etcd3';
import { replaceFile } from '../sys/atomic-file.js';
import { clusterEtcdOptions, etcdCall } from '../maintenance/etcd-call.js';
import { etcdCredentials } from '../maintenance/open-datastore-access.js';
import type { ClusterSettings } from './cluster-settings.js';

/** The config dir's files the servers of a cluster share. */
export const SHARED_CONFIG_FILES: readonly string[] = [
  'user.cfg',
  'acl.cfg',
  'shadow.json',
  'token.shadow',
  'authkey.key',
  'authkey.pub',
  'csrf.key',
  'remote.cfg',
  'prune.cfg',
  'verification.cfg',
  'sync.cfg',
  'maintenance-window.cfg',
  's3.cfg',
  'notifications.cfg',
  'notifications-priv.cfg',
];

/** How long a burst of local writes to one file is let settle before it is put in etcd. */
const SETTLE_MS = 50;

interface FileValue {
  mode: number;
  /** base64 of the file's bytes */
  data: string;
}

const hashOf = (v: FileValue) => createHash('sha256').update(`${v.mode}\n${v.data}`).digest('hex');

export interface ConfigSyncLog {
  warn(msg: string): void;
  error(obj: object, msg: string): void;
}

/** Before the server's logger exists: one line on stderr. */
const STDERR_LOG: ConfigSyncLog = {
  warn: (msg) => process.stderr.write(`warning: ${msg}\n`),
  error: (obj, msg) => process.stderr.write(`error: ${msg}: ${String((obj as { err?: unknown }).err)}\n`),
};

export class ClusterConfigSync {
  private readonly client: Etcd3;
  private readonly keyPrefix: string;
  /** Hash of each file as it was last in step with etcd (absent: not in etcd). */
  private readonly synced = new Map<string, string>();
  private readonly pending = new Map<string, NodeJS.Timeout>();
  /** Whether `seedCreated` has run: before, a file never in step with the cluster is left to it. */
  private seeded = false;
  /** Files whose push waited for `seedCreated` (pushed after it, if still needed). */
  private readonly held = new Set<string>();
  private fsWatcher: FSWatcher | undefined;
  private etcdWatcher: Watcher | undefined;
  private closed = false;

  private constructor(
    settings: ClusterSettings,
    private readonly configDir: string,
    private readonly statePath: string,
    private log: ConfigSyncLog,
  ) {
    this.client = new Etcd3(
      clusterEtcdOptions(
        settings.endpoints,
        5_000,
        settings.tls && { credentials: etcdCredentials(settings.tls) },
      ),
    );
    this.keyPrefix = `${settings.prefix}config/files/`;
  }

  /**
   * Bring the config dir in step with the cluster and follow both ways; rejects when etcd cannot be
   * reached. A shared file created after this (at the server's start) is held until `seedCreated`.
   */
  static async start(
    settings: ClusterSettings,
    paths: { configDir: string; dataDir: string },
    log: ConfigSyncLog = STDERR_LOG,
  ): Promise<ClusterConfigSync> {
    const sync = new ClusterConfigSync(
      settings,
      paths.configDir,
      join(paths.dataDir, 'cluster-config-sync.json'),
      log,
    );
    try {
      await sync.catchUp();
    } catch (err) {
      sync.client.close();
      throw err;
    }
    return sync;
  }

  /** Log through the server's logger from now on. */
  useLog(log: ConfigSyncLog): void {
    this.log = log;
  }

  private path(name: string): string {
    return join(this.configDir, name);
  }

  private readLocal(name: string): FileValue | undefined {
    const path = this.path(name);
    try {
      return { mode: statSync(path).mode & 0o777, data: readFileSync(path).toString('base64') };
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw err;
    }
  }

  private writeLocal(name: string, value: FileValue | undefined): void {
    if (value === undefined) rmSync(this.path(name), { force: true });
    else replaceFile(this.path(name), Buffer.from(value.data, 'base64'), { fsync: true, mode: value.mode });
  }

  /** Take the cluster's copy of `name` (none: remove it here) as this server's, in step. */
  private adopt(name: string, value: FileValue | undefined): void {
    this.writeLocal(name, value);
    if (value) this.synced.set(name, hashOf(value));
    else this.synced.delete(name);
  }

  private loadState(): Map<string, string> {
    try {
      return new Map(
        Object.entries(JSON.parse(readFileSync(this.statePath, 'utf8')) as Record<string, string>),
      );
    } catch {
      return new Map(); // never in step yet: etcd's copy wins where both exist
    }
  }

  private saveState(): void {
    replaceFile(this.statePath, JSON.stringify(Object.fromEntries(this.synced)) + '\n', { mode: 0o600 });
  }

  private async catchUp(): Promise<void> {
    const res = await etcdCall('the shared configuration', () =>
      this.client.getAll().prefix(this.keyPrefix).exec(),
    );
    const remote = new Map<string, FileValue>();
    for (const kv of res.kvs) {
      const name = kv.key.toString().slice(this.keyPrefix.length);
      if (SHARED_CONFIG_FILES.includes(name)) remote.set(name, JSON.parse(kv.value.toString()) as FileValue);
    }
    const before = this.loadState();
    for (const name of SHARED_CONFIG_FILES) {
      const local = this.readLocal(name);
      const theirs = remote.get(name);
      const localHash = local && hashOf(local);
      // the first server of the cluster to have it seeds the cluster's copy (seedLocal, below)
      if (theirs === undefined) continue;
      const theirHash = hashOf(theirs);
      if (localHash === theirHash) {
        this.synced.set(name, theirHash);
        continue;
      }
      const changedHere = localHash !== undefined && localHash !== before.get(name);
      const changedThere = theirHash !== before.get(name);
      if (local && changedHere && !changedThere) {
        await this.put(name, local, {});
        continue;
      }
      if (changedHere && changedThere)
        this.log.warn(
          `${name} changed here and in the cluster while this server was down: the cluster's copy is kept`,
        );
      this.adopt(name, theirs);
    }
    this.saveState();
    await this.seedLocal();
    this.follow(BigInt(res.header.revision));
  }

  /**
   * Seed the cluster with the shared files this server created since it caught up (the ticket
   * keys, root's password on a first start), where the cluster still has none, and only then
   * follow local changes of such files. Returns the files of which the cluster had a copy already,
   * now written here in place of this server's (another server started at the same time seeded
   * them: its root password is the cluster's, not one this server generated).
   */
  async seedCreated(): Promise<{ adopted: ReadonlySet<string> }> {
    const adopted = await this.seedLocal();
    this.seeded = true;
    for (const name of this.held) this.schedulePush(name);
    this.held.clear();
    return { adopted };
  }

  /**
   * Put in etcd the files this server has and the cluster lacks, all in one transaction; where the
   * cluster has a copy of any of them, adopt its copies instead (the put is all or nothing) and
   * try again with the files it still lacks. When servers start together, each finds the cluster
   * empty and creates its own files; all of one server's files go in together (the two halves of
   * a key pair must come from the same server), the first wins, and the others adopt its copies,
   * before they read them (a server signing tickets with a key the cluster then replaced, or
   * verifying with half of another's pair, refuses logins). Returns the names adopted.
   */
  private async seedLocal(): Promise<Set<string>> {
    const adopted = new Set<string>();
    for (;;) {
      const ours = new Map<string, FileValue>();
      for (const name of SHARED_CONFIG_FILES) {
        const local = this.synced.has(name) ? undefined : this.readLocal(name);
        if (local) ours.set(name, local);
      }
      if (ours.size === 0) break;
      const names = [...ours.keys()];
      const keys = names.map((name) => this.keyPrefix + name);
      const res = await etcdCall('the shared configuration', () => {
        let txn = this.client.if(keys[0]!, 'Version', '==', 0);
        for (const key of keys.slice(1)) txn = txn.and(key, 'Version', '==', 0);
        return txn
          .then(...names.map((name, i) => this.client.put(keys[i]!).value(JSON.stringify(ours.get(name)))))
          .else(...keys.map((key) => this.client.get(key)))
          .commit();
      });
      for (const [i, name] of names.entries()) {
        if (res.succeeded) {
          this.synced.set(name, hashOf(ours.get(name)!));
          continue;
        }
        // the cluster has none of this one: it goes in the next round
        const kv = res.responses[i]?.response_range?.kvs[0];
        if (!kv) continue;
        this.adopt(name, JSON.parse(kv.value.toString()) as FileValue);
        adopted.add(name);
      }
      this.saveState();
    }
    return adopted;
  }

  /** Put `value` as `name`'s cluster copy (only if there is none: the first seeder wins, others adopt it). */
  private async put(name: string, value: FileValue, opts: { onlyIfAbsent?: boolean }): Promise<void> {
    const key = this.keyPrefix + name;
    const text = JSON.stringify(value);
    if (opts.onlyIfAbsent) {
      const res = await etcdCall('the shared configuration', () =>
        this.client
          .if(key, 'Version', '==', 0)
          .then(this.client.put(key).value(text))
          .else(this.client.get(key))
          .commit(),
      );
      if (!res.succeeded) {
        const kv = res.responses[0]?.response_range?.kvs[0];
        if (kv) return this.adopt(name, JSON.parse(kv.value.toString()) as FileValue);
      }
    } else {
      await etcdCall('the shared configuration', () => this.client.put(key).value(text).exec());
    }
    this.synced.set(name, hashOf(value));
  }

  private follow(afterRevision: bigint): void {
    // our own writes to the config dir (and admin commands') are put in etcd
    this.fsWatcher = watch(this.configDir, (_event, filename) => {
      const name = filename?.toString();
      if (name && SHARED_CONFIG_FILES.includes(name)) this.schedulePush(name);
    });
    this.fsWatcher.on('error', (err) => this.log.error({ err }, 'watching the config dir failed'));
    void this.client
      .watch()
      .prefix(this.keyPrefix)
      .startRevision(String(afterRevision + 1n))
      .create()
      .then((w) => {
        if (this.closed) return void w.cancel();
        this.etcdWatcher = w;
        w.on('put', (kv) => this.learn(kv.key.toString(), JSON.parse(kv.value.toString()) as FileValue));
        w.on('delete', (kv) => this.learn(kv.key.toString(), undefined));
      })
      .catch((err: unknown) =>
        this.log.error({ err }, "following the cluster's shared configuration failed"),
      );
  }

  /** Another server's change: written here, unless this server has a newer change not yet put (it goes next and wins). */
  private learn(key: string, value: FileValue | undefined): void {
    const name = key.slice(this.keyPrefix.length);
    if (this.closed || !SHARED_CONFIG_FILES.includes(name)) return;
    const local = this.readLocal(name);
    if (!this.seeded && !this.synced.has(name)) {
      // start-up: a file this server is creating (or has created) is left to seedCreated, which
      // adopts the cluster's copy whole; one it lacks is written, but not as in step (were it
      // counted in step, a creator overwriting it right after would put its own over the cluster's)
      if (value && !local) this.writeLocal(name, value);
      return;
    }
    const theirHash = value && hashOf(value);
    const localHash = local && hashOf(local);
    if (localHash === theirHash) {
      if (theirHash) this.synced.set(name, theirHash);
      else this.synced.delete(name);
      this.saveState();
      return;
    }
    if (localHash !== this.synced.get(name)) return this.schedulePush(name);
    try {
      this.adopt(name, value);
    } catch (err) {
      this.log.error({ err }, `writing ${name} from the cluster's configuration failed`);
      return;
    }
    this.saveState();
  }

  private schedulePush(name: string): void {
    if (this.closed) return;
    const t = this.pending.get(name);
    if (t) clearTimeout(t);
    this.pending.set(
      name,
      setTimeout(() => {
        this.pending.delete(name);
        this.push(name).catch((err: unknown) => {
          // etcd unreachable: tried again at the file's next change, and at the next start
          this.log.error({ err }, `putting ${name} in the cluster's configuration failed`);
        });
      }, SETTLE_MS).unref(),
    );
  }

  private async push(name: string): Promise<void> {
    // created at start: seedCreated puts it with the others this server created (or adopts the
    // cluster's); put alone now, half of a key pair could win against another server's other half
    if (!this.seeded && !this.synced.has(name)) {
      this.held.add(name);
      return;
    }
    const local = this.readLocal(name);
    const localHash = local && hashOf(local);
    if (localHash === this.synced.get(name)) return;
    // a file never in step with the cluster (created here at start) only seeds an empty place:
    // overwriting the copy another server seeded would swap keys under servers already using them
    if (local) await this.put(name, local, { onlyIfAbsent: !this.synced.has(name) });
    else {
      await etcdCall('the shared configuration', () =>
        this.client
          .delete()
          .key(this.keyPrefix + name)
          .exec(),
      );
      this.synced.delete(name);
    }
    this.saveState();
  }

  async close(): Promise<void> {
    this.closed = true;
    for (const t of this.pending.values()) clearTimeout(t);
    this.pending.clear();
    this.fsWatcher?.close();
    await this.etcdWatcher?.cancel().catch(() => undefined);
    this.client.close();
  }
}
