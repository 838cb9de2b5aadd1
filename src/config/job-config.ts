/**
 * Job configuration files in PBS's section-config format, so a PBS operator can read them:
 *
 *   prune.cfg                                 verification.cfg
 *   prune: daily-web                          verification: weekly-all
 *   	store store1                              	store store1
 *   	schedule daily                            	schedule sat 18:15
 *   	keep-last 7                               	ignore-verified true
 *   	ns web                                    	outdated-after 30
 *
 * (PBS `pbs-api-types` `PruneJobConfig`, `VerificationJobConfig`; `pbs-config/src/prune.rs`,
 * `verify.rs`.) Writers serialize through `.prune.lck` / `.verification.lck`, check the caller's
 * digest (hex SHA-256 of the raw file, as PBS), and replace the file atomically. Properties this
 * version does not know are kept verbatim, so a file PBS wrote survives a rewrite.
 */
import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  MAX_NAMESPACE_DEPTH,
  SAFE_ID_REGEX,
  parseNamespace,
  validateDatastoreName,
} from '../api-types/names.js';
import { BadConfigError, BadRequestError, ConfigModifiedError } from '../errors.js';
import { withFileLock } from '../sys/file-lock.js';
import { replaceFile } from '../sys/atomic-file.js';
import { validateCalendarEvent } from '../api-types/calendar-event.js';
import { formatSectionConfig, parseSectionConfig, sectionLine, type Section } from './section-config.js';

import { parseGroupFilter } from '../sync/group-filter.js';
import { parseHumanByte } from '../api-types/human-byte.js';
import { validateRemoteName } from './remote-config.js';
import { parseAuthId } from './user-config.js';
import { KEEP_OPTION_NAMES as KEEP_KEYS } from '../api-types/prune-options.js';

export { KEEP_KEYS };

/**
 * One section of a file this module reads and writes: an id and the properties this version
 * does not know (other section files, e.g. s3.cfg, reuse the machinery with their own kind).
 */
export interface SectionEntry {
  id: string;
  /** Properties Stowage does not know, written back unchanged. */
  extra?: Array<[key: string, value: string]>;
}

export interface JobBase extends SectionEntry {
  store: string;
  /** Namespace `a/b`; absent means the root namespace. */
  ns?: string;
  'max-depth'?: number;
  comment?: string;
}

/** PBS `PruneJobConfig` (its `PruneJobOptions` flattened, as in prune.cfg). */
export interface PruneJobConfig extends JobBase {
  schedule: string;
  disable?: boolean;
  'keep-last'?: number;
  'keep-hourly'?: number;
  'keep-daily'?: number;
  'keep-weekly'?: number;
  'keep-monthly'?: number;
  'keep-yearly'?: number;
}

/** PBS `VerificationJobConfig`. Without a schedule the job only runs when started by hand. */
export interface VerifyJobConfig extends JobBase {
  schedule?: string;
  /** Skip snapshots whose last verification succeeded (and is not outdated). */
  'ignore-verified'?: boolean;
  /** Days after which a successful verification counts as outdated. */
  'outdated-after'?: number;
  /**
   * Stowage extension (docs/adr/002): check as a `read` operation that records nothing, so the
   * job also runs on a read-only datastore. Default false: record verify_state as PBS does.
   */
  'read-only'?: boolean;
}

/** `list`: an array, one `key value` line per item (proxmox-section-config's array properties). */
type PropKind = 'string' | 'schedule' | 'bool' | 'int' | 'store' | 'ns' | 'depth' | 'list';

export interface JobKind<T extends SectionEntry> {
  file: string;
  lock: string;
  sectionType: string;
  /** Typed properties in the order a new section is written. */
  props: ReadonlyArray<readonly [key: string, kind: PropKind]>;
  required: readonly string[];
  /** Structural check beyond each property's own (e.g. a prune job must keep something). */
  check?(job: T): void;
}

export const PRUNE_JOBS: JobKind<PruneJobConfig> = {
  file: 'prune.cfg',
  lock: '.prune.lck',
  sectionType: 'prune',
  props: [
    ['store', 'store'],
    ['ns', 'ns'],
    ['max-depth', 'depth'],
    ['schedule', 'schedule'],
    ['disable', 'bool'],
    ...KEEP_KEYS.map((k) => [k, 'int'] as const),
    ['comment', 'string'],
  ],
  required: ['store', 'schedule'],
};

export const VERIFY_JOBS: JobKind<VerifyJobConfig> = {
  file: 'verification.cfg',
  lock: '.verification.lck',
  sectionType: 'verification',
  props: [
    ['store', 'store'],
    ['ns', 'ns'],
    ['max-depth', 'depth'],
    ['schedule', 'schedule'],
    ['ignore-verified', 'bool'],
    ['outdated-after', 'int'],
    ['read-only', 'bool'],
    ['comment', 'string'],
  ],
  required: ['store'],
};

/**
 * PBS `SyncJobConfig` (sync.cfg). Pull (the default): copy `remote-store` of `remote` (a local
 * datastore without `remote`) into `store`. Push (`sync-direction push`, PBS 4): copy `store` into
 * `remote-store` of `remote`. Rate limits as PBS: `rate-in`/`burst-in` for pulls,
 * `rate-out`/`burst-out` for pushes.
 */
export interface SyncJobConfig extends JobBase {
  remote?: string;
  'remote-store': string;
  'remote-ns'?: string;
  /** Owner of the groups the job creates; default root@pam (PBS). */
  owner?: string;
  'remove-vanished'?: boolean;
  'group-filter'?: string[];
  'transfer-last'?: number;
  schedule?: string;
  'sync-direction'?: 'pull' | 'push';
  'rate-in'?: string;
  'burst-in'?: string;
  'rate-out'?: string;
  'burst-out'?: string;
  /** PBS 4: run when a removable datastore of the job (its store, or a local source) is mounted. */
  'run-on-mount'?: boolean;
  /** Unmount the job's removable datastores (store, local source) once it finished successfully. */
  'unmount-on-done'?: boolean;
  /** PBS 4: only snapshots whose last verification succeeded. */
  'verified-only'?: boolean;
  /** PBS 4: only snapshots whose every archive is encrypted. */
  'encrypted-only'?: boolean;
  /** Pull jobs only: sync again the target's snapshots whose last verification failed. */
  'resync-corrupt'?: boolean;
  /** PBS 4: groups synced at once (1 to 32). */
  'worker-threads'?: number;
}

/** PBS `SYNC_WORKER_THREADS_SCHEMA`: a sync's `worker-threads` is 1 to 32 (default 1). */
export const MAX_SYNC_WORKERS = 32;

export const SYNC_JOBS: JobKind<SyncJobConfig> = {
  file: 'sync.cfg',
  lock: '.sync.lck',
  sectionType: 'sync',
  props: [
    ['store', 'store'],
    ['ns', 'ns'],
    ['owner', 'string'],
    ['remote', 'string'],
    ['remote-store', 'store'],
    ['remote-ns', 'ns'],
    ['remove-vanished', 'bool'],
    ['max-depth', 'depth'],
    ['group-filter', 'list'],
    ['transfer-last', 'int'],
    ['schedule', 'schedule'],
    ['sync-direction', 'string'],
    ['rate-in', 'string'],
    ['burst-in', 'string'],
    ['rate-out', 'string'],
    ['burst-out', 'string'],
    ['run-on-mount', 'bool'],
    ['unmount-on-done', 'bool'],
    ['encrypted-only', 'bool'],
    ['verified-only', 'bool'],
    ['resync-corrupt', 'bool'],
    ['worker-threads', 'int'],
    ['comment', 'string'],
  ],
  required: ['store', 'remote-store'],
  check(job) {
    if (job.remote !== undefined) validateRemoteName(job.remote, 'remote');
    if (job.owner !== undefined && !parseAuthId(job.owner)) {
      throw new BadRequestError(`invalid owner '${job.owner}': must be user@realm or user@realm!token`, {
        param: 'owner',
      });
    }
    for (const f of job['group-filter'] ?? []) parseGroupFilter(f);
    const direction = job['sync-direction'];
    if (direction !== undefined && direction !== 'pull' && direction !== 'push') {
      throw new BadRequestError(`invalid sync-direction '${String(direction)}': must be pull or push`, {
        param: 'sync-direction',
      });
    }
    const threads = job['worker-threads'];
    if (
      threads !== undefined &&
      !(Number.isInteger(threads) && threads >= 1 && threads <= MAX_SYNC_WORKERS)
    ) {
      throw new BadRequestError(`invalid worker-threads '${threads}': must be 1 to ${MAX_SYNC_WORKERS}`, {
        param: 'worker-threads',
      });
    }
    // PBS refuses the option on a push job even when false
    if (direction === 'push' && job['resync-corrupt'] !== undefined) {
      throw new BadRequestError('push jobs do not support resync-corrupt option', {
        param: 'resync-corrupt',
      });
    }
    for (const key of ['rate-in', 'burst-in', 'rate-out', 'burst-out'] as const) {
      const v = job[key];
      if (v !== undefined) parseHumanByte(v, key);
    }
    if (direction === 'push' && job.remote === undefined) {
      throw new BadRequestError('a push sync job needs a remote', { param: 'remote' });
    }
    if (job.remote === undefined && job.store === job['remote-store']) {
      throw new BadRequestError("can't sync to same datastore", { param: 'remote-store' });
    }
  },
};

/** PBS `JOB_ID_SCHEMA`: a safe-id of 3 to 32 characters. */
export function validateJobId(id: unknown, param = 'id'): string {
  if (typeof id !== 'string' || !SAFE_ID_REGEX.test(id) || id.length < 3 || id.length > 32) {
    throw new BadRequestError(
      `invalid ${param} '${String(id)}': must be 3 to 32 characters of A-Z a-z 0-9 _ . - (not starting with . or -)`,
      { param },
    );
  }
  return id;
}

const TRUE_WORDS = new Set(['1', 'true', 'yes', 'on']);
const FALSE_WORDS = new Set(['0', 'false', 'no', 'off']);

/** Check one typed value as given through the API or read from a file; throws BadRequestError. */
function checkValue(kind: PropKind, key: string, value: unknown): void {
  const bad = (why: string) =>
    new BadRequestError(`invalid ${key} '${String(value)}': ${why}`, { param: key });
  switch (kind) {
    case 'bool':
      if (typeof value !== 'boolean') throw bad('must be a boolean');
      return;
    case 'int':
      if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 1) {
        throw bad('must be an integer of at least 1');
      }
      return;
    case 'depth':
      if (
        typeof value !== 'number' ||
        !Number.isSafeInteger(value) ||
        value < 0 ||
        value > MAX_NAMESPACE_DEPTH
      ) {
        throw bad(`must be an integer from 0 to ${MAX_NAMESPACE_DEPTH}`);
      }
      return;
    case 'store':
      validateDatastoreName(value, key);
      return;
    case 'ns':
      parseNamespace(value, key);
      return;
    case 'schedule':
      if (typeof value !== 'string') throw bad('must be a string');
      validateCalendarEvent(value, key);
      return;
    case 'list':
      if (!Array.isArray(value)) throw bad('must be a list');
      for (const item of value as unknown[]) checkValue('string', key, item);
      return;
    case 'string':
      if (typeof value !== 'string') throw bad('must be a string');
      if (/[\x00-\x1f\x7f]/.test(value)) throw bad('must not contain control characters');
      if (value.trim() !== value) throw bad('must not start or end with whitespace');
      return;
  }
}

/** Validate a job as built by a caller; BadRequestError names the field. */
export function validateJob<T extends SectionEntry>(kind: JobKind<T>, job: T): void {
  validateJobId(job.id);
  const record = job as unknown as Record<string, unknown>;
  const known = new Map(kind.props);
  for (const key of kind.required) {
    if (record[key] === undefined) {
      throw new BadRequestError(`parameter verification failed - '${key}': property is missing`, {
        param: key,
      });
    }
  }
  for (const [key, value] of Object.entries(record)) {
    if (key === 'id' || key === 'extra' || value === undefined) continue;
    const k = known.get(key);
    if (!k) throw new BadRequestError(`unknown property '${key}' of ${kind.sectionType} job '${job.id}'`);
    checkValue(k, key, value);
  }
  kind.check?.(job);
}

function sha256Hex(data: string): string {
  return createHash('sha256').update(data).digest('hex');
}

/** Parse a job file. Every problem is a BadConfigError naming the file and line. */
export function parseJobConfig<T extends SectionEntry>(
  kind: JobKind<T>,
  text: string,
  file = kind.file,
): { jobs: Map<string, T>; sections: Section[] } {
  const sections = parseSectionConfig(text, file, listKeys(kind));
  const jobs = new Map<string, T>();
  const known = new Map(kind.props);
  for (const section of sections) {
    const at = (key?: string) => `${file} line ${sectionLine(section, key) ?? '?'}`;
    if (section.type !== kind.sectionType) {
      throw new BadConfigError(
        `${at()}: unexpected section type '${section.type}' (expected '${kind.sectionType}')`,
      );
    }
    const job: Record<string, unknown> = { id: section.id };
    const extra: Array<[string, string]> = [];
    for (const [key, raw] of section.props) {
      const k = known.get(key);
      if (!k) extra.push([key, raw]);
      else if (k === 'list') ((job[key] as string[] | undefined) ?? (job[key] = [] as string[])).push(raw);
      else if (k === 'bool') {
        const w = raw.toLowerCase();
        if (!TRUE_WORDS.has(w) && !FALSE_WORDS.has(w)) {
          throw new BadConfigError(`${at(key)}: '${key}' must be true or false, not '${raw}'`);
        }
        job[key] = TRUE_WORDS.has(w);
      } else if (k === 'int' || k === 'depth') {
        if (!/^\d+$/.test(raw))
          throw new BadConfigError(`${at(key)}: '${key}' must be a number, not '${raw}'`);
        job[key] = Number(raw);
      } else job[key] = raw;
    }
    if (extra.length > 0) job.extra = extra;
    try {
      validateJob(kind, job as unknown as T);
    } catch (err) {
      throw new BadConfigError(`${at()}: ${(err as Error).message}`);
    }
    jobs.set(section.id, job as unknown as T);
  }
  return { jobs, sections };
}

/** Serialize jobs, keeping the property order of sections they came from. */
export function formatJobConfig<T extends SectionEntry>(
  kind: JobKind<T>,
  jobs: ReadonlyMap<string, T>,
  previous: readonly Section[] = [],
): string {
  const sections: Section[] = [];
  for (const [id, job] of jobs) {
    validateJob(kind, job);
    if (id !== job.id) throw new BadRequestError(`job '${job.id}' is stored under the different id '${id}'`);
    const record = job as unknown as Record<string, unknown>;
    const extra = new Map(job.extra ?? []);
    const known = new Map(kind.props);
    const props: Array<[string, string]> = [];
    const emitted = new Set<string>();
    const emit = (key: string) => {
      if (emitted.has(key)) return;
      emitted.add(key);
      const value = known.has(key) ? record[key] : extra.get(key);
      if (Array.isArray(value)) for (const item of value) props.push([key, String(item)]);
      else if (value !== undefined && value !== '') props.push([key, String(value)]);
    };
    const old = previous.find((s) => s.type === kind.sectionType && s.id === id);
    for (const [key] of old?.props ?? []) emit(key);
    for (const [key] of kind.props) emit(key);
    for (const key of extra.keys()) emit(key);
    sections.push({ type: kind.sectionType, id, props });
  }
  return formatSectionConfig(sections, listKeys(kind));
}

function listKeys<T extends SectionEntry>(kind: JobKind<T>): Set<string> {
  return new Set(kind.props.filter(([, k]) => k === 'list').map(([key]) => key));
}

export interface JobConfigSnapshot<T> {
  jobs: Map<string, T>;
  /** Hex SHA-256 of the raw file ('' hashed when it is missing), PBS's `digest`. */
  digest: string;
}

/** One job file of one config directory. */
export class JobConfigFile<T extends SectionEntry> {
  readonly path: string;
  readonly lockPath: string;

  constructor(
    readonly kind: JobKind<T>,
    readonly configDir: string,
  ) {
    this.path = join(configDir, kind.file);
    this.lockPath = join(configDir, kind.lock);
  }

  private readRaw(): string {
    try {
      return readFileSync(this.path, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return '';
      throw err;
    }
  }

  /** Read the file now; a missing file has no jobs. */
  read(): JobConfigSnapshot<T> {
    const raw = this.readRaw();
    return { jobs: parseJobConfig(this.kind, raw, this.path).jobs, digest: sha256Hex(raw) };
  }

  /** One job, or undefined. */
  get(id: string): T | undefined {
    return this.read().jobs.get(id);
  }

  /**
   * Read-modify-write under the file's lock; with `digest`, ConfigModifiedError when the file
   * changed since the caller read it. Nothing is written when `mutate` throws or the result does
   * not validate.
   */
  async update<R>(mutate: (jobs: Map<string, T>) => R, opts: { digest?: string } = {}): Promise<R> {
    return withFileLock(this.lockPath, () => {
      const raw = this.readRaw();
      if (opts.digest !== undefined && opts.digest !== sha256Hex(raw)) throw new ConfigModifiedError();
      const { jobs, sections } = parseJobConfig(this.kind, raw, this.path);
      const result = mutate(jobs);
      const text = formatJobConfig(this.kind, jobs, sections);
      if (text !== raw) {
        mkdirSync(this.configDir, { recursive: true });
        replaceFile(this.path, text, { fsync: true, mode: 0o640 });
      }
      return result;
    });
  }
}

export const pruneJobConfig = (configDir: string) => new JobConfigFile(PRUNE_JOBS, configDir);
export const verifyJobConfig = (configDir: string) => new JobConfigFile(VERIFY_JOBS, configDir);
export const syncJobConfig = (configDir: string) => new JobConfigFile(SYNC_JOBS, configDir);

/** The ACL path a job acts on (`/datastore/{store}[/{ns}]`), for permission checks. */
export function jobAclPath(job: Pick<JobBase, 'store' | 'ns'>): string {
  return job.ns ? `/datastore/${job.store}/${job.ns}` : `/datastore/${job.store}`;
}
