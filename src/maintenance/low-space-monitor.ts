/**
 * Applies the low-space rule (low-space-hold.ts) to the datastores: before each ingest admission
 * (DatastoreAccess.lookupDatastore, on a statfs sample at most STATFS_CACHE_MS old, so a burst of
 * uploads costs one statfs) and periodically in the server (startLowSpaceMonitor), so the hold
 * also lifts on a store nobody writes to. The hold itself is a `sealed` system hold of source
 * `low-space`, enforced by the admission backend's `admit` like any other hold.
 *
 * The operator's forced release ("overridden" in the rule) must stand in every process of the
 * instance that admits (the server, a second server during a graceful restart, CLI tools): it is
 * kept as a small file per datastore, `<data dir>/low-space-override/<store>`, written before the
 * hold is lifted and removed by whichever process first samples free space above the release
 * level. A file rather than the maintenance history: the history's forced `hold-released` says
 * when an override began but not that it ended, and a restarted server would take back up an
 * override that had already ended — and then never hold that store again until it filled up.
 */
import { mkdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  datastoreAbsolutePath,
  type DatastoreConfig,
  type DatastoreConfigSource,
} from '../config/datastore-config.js';
import type { AdmissionBackend } from './admission-backend.js';
import { storedMaintenanceMode } from './local-admission-backend.js';
import {
  decideLowSpace,
  forcedReleaseWarning,
  freePercent,
  LOW_SPACE_SOURCE,
  lowSpaceMessage,
  lowSpaceThresholds,
} from './low-space-hold.js';
import { modeAdmits, type SystemHold } from './maintenance-mode.js';
import { isSupportedDatastore } from './unsupported-datastore.js';
import { isDatastoreMounted } from './removable-datastore.js';

/** How long one statfs sample answers for a store's ingest admissions. */
export const STATFS_CACHE_MS = 2000;

/** How often the server checks every datastore (STOWAGE_LOW_SPACE_INTERVAL_MS overrides it). */
export const LOW_SPACE_INTERVAL_MS = 15_000;

/** The periodic pass's interval: STOWAGE_LOW_SPACE_INTERVAL_MS when set (tests), else the default. */
export function lowSpaceIntervalMs(env: NodeJS.ProcessEnv = process.env): number {
  const ms = Number(env.STOWAGE_LOW_SPACE_INTERVAL_MS);
  return Number.isInteger(ms) && ms > 0 ? ms : LOW_SPACE_INTERVAL_MS;
}

export interface LowSpaceLog {
  warn(obj: object, msg: string): void;
}

/** What a forced release did. */
export interface ForcedRelease {
  /** The hold lifted (undefined: there was none of that source). */
  released?: SystemHold;
  /** What lifting it risks, for the operator. */
  warning?: string;
}

interface Sample {
  path: string;
  at: number;
  free: number;
}

/** Writes to stderr: a CLI process has no other log, and a statfs failure must not go unseen. */
const stderrLog: LowSpaceLog = {
  warn: (obj, msg) => process.stderr.write(`warning: ${msg}: ${String((obj as { err?: unknown }).err)}\n`),
};

export class LowSpaceMonitor {
  /** Where failures to sample are reported; the server sets its logger. */
  log: LowSpaceLog = stderrLog;
  private readonly samples = new Map<string, Sample>();

  constructor(
    private readonly opts: {
      config: DatastoreConfigSource;
      backend: AdmissionBackend;
      /** `<data dir>/low-space-override`: one file per store whose hold an operator lifted by force. */
      overrideDir: string;
    },
  ) {}

  /**
   * Before an ingest admission on `store`: sample free space (once per STATFS_CACHE_MS) and engage,
   * update or lift the hold. Never throws: a failure to sample is logged and the admission goes on
   * (admit still enforces whatever hold is in place).
   */
  async beforeIngest(store: string): Promise<void> {
    const cfg = this.opts.config.readCached().stores.get(store);
    if (!cfg) return; // admit answers 404
    const last = this.samples.get(store);
    // within a burst the first admission decided on this very sample; the rest admit on it
    if (last && last.path === datastoreAbsolutePath(cfg) && Date.now() - last.at < STATFS_CACHE_MS) return;
    await this.checkLogged(cfg);
  }

  /** Check every datastore now (the server's periodic pass). */
  async checkAll(): Promise<void> {
    for (const cfg of this.opts.config.readCached().stores.values()) await this.checkLogged(cfg);
  }

  private async checkLogged(cfg: DatastoreConfig): Promise<void> {
    try {
      await this.check(cfg);
    } catch (err) {
      this.log.warn({ err, store: cfg.name }, `low-space check of datastore '${cfg.name}' failed`);
    }
  }

  /**
   * Sample `cfg`'s free space now and apply the rule. Returns the percent free, or undefined for a
   * store that is not sampled: one this version does not open (S3), a removable one not mounted, one whose mode keeps
   * everyone off its disk (offline, being unmounted or deleted), or whose path is missing.
   */
  async check(cfg: DatastoreConfig): Promise<number | undefined> {
    // an unmounted removable store's mount point is a directory on the root filesystem
    if (!isSupportedDatastore(cfg) || !isDatastoreMounted(cfg)) return undefined;
    const mode = storedMaintenanceMode(cfg);
    if (mode && !modeAdmits(mode, 'read')) return undefined;
    const path = datastoreAbsolutePath(cfg);
    let free: number;
    try {
      free = await freePercent(path);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw err;
    }
    this.samples.set(cfg.name, { path, at: Date.now(), free });
    const store = cfg.name;
    const { backend } = this.opts;
    const held = (await backend.holds(store)).find((h) => h.source === LOW_SPACE_SOURCE);
    const overridden = this.overridden(store);
    const decision = decideLowSpace(free, lowSpaceThresholds(cfg), { held: held !== undefined, overridden });
    if (overridden && !decision.overridden) rmSync(this.overrideFile(store), { force: true });
    const message = lowSpaceMessage(free);
    if (decision.action === 'release') {
      await backend.setHold(store, LOW_SPACE_SOURCE, undefined);
    } else if (decision.action === 'engage' || (held && held.message !== message)) {
      // an operator's force may have come since we looked: do not take it back
      if (this.overridden(store)) return free;
      // the same type again only updates the message: no event, the hold's `since` stays
      await backend.setHold(store, LOW_SPACE_SOURCE, { type: 'sealed', message });
    }
    return free;
  }

  /**
   * The operator's forced release of the hold of `source` on `store`. For the low-space hold the
   * override is recorded first (so no process engages it again in between) and stands until free
   * space has once risen above the release level. NotFoundError for an unknown store.
   */
  async forceRelease(store: string, source: string, authId?: string): Promise<ForcedRelease> {
    const { backend } = this.opts;
    const hold = (await backend.holds(store)).find((h) => h.source === source);
    if (!hold) return {};
    let warning: string | undefined;
    if (source === LOW_SPACE_SOURCE) {
      mkdirSync(this.opts.overrideDir, { recursive: true, mode: 0o750 });
      writeFileSync(
        this.overrideFile(store),
        JSON.stringify({ since: Date.now(), 'auth-id': authId }) + '\n',
      );
      const cfg = this.opts.config.readCached().stores.get(store);
      const free = cfg ? await freePercent(datastoreAbsolutePath(cfg)).catch(() => undefined) : undefined;
      warning = free === undefined ? 'writing with low space may fill the disk' : forcedReleaseWarning(free);
    }
    const change = await backend.setHold(store, source, undefined, {
      forced: true,
      ...(authId !== undefined && { authId }),
    });
    return { ...(change.previous && { released: change.previous }), ...(warning && { warning }) };
  }

  private overrideFile(store: string): string {
    return join(this.opts.overrideDir, store);
  }

  private overridden(store: string): boolean {
    try {
      statSync(this.overrideFile(store));
      return true;
    } catch {
      return false;
    }
  }
}

export interface LowSpaceTimer {
  stop(): void;
}

/** The server's periodic pass over every datastore (every LOW_SPACE_INTERVAL_MS by default). */
export function startLowSpaceMonitor(
  monitor: LowSpaceMonitor,
  opts: { intervalMs?: number; log?: LowSpaceLog } = {},
): LowSpaceTimer {
  if (opts.log) monitor.log = opts.log;
  let running = false;
  const tick = async () => {
    if (running) return; // a slow statfs (a hung NFS mount) is not piled up on
    running = true;
    try {
      await monitor.checkAll();
    } finally {
      running = false;
    }
  };
  const timer = setInterval(() => void tick(), opts.intervalMs ?? LOW_SPACE_INTERVAL_MS);
  timer.unref();
  return { stop: () => clearInterval(timer) };
}
