/**
 * `datastore.cfg`, typed: which datastores exist, where they live and their options, in PBS's
 * section-config format (reference §1.4) so a PBS operator can read and hand-edit it:
 *
 *   datastore: store1
 *   	path /mnt/datastore/store1
 *   	maintenance-mode read-only,message=disk swap
 *
 * Writers serialize through `.datastore.lck` (an flock, as PBS's `open_backup_lockfile`), check
 * the caller's digest, and replace the file atomically with fsync, so a crash leaves the old or
 * the new file, never half of one. Properties this version does not know (written by PBS or a
 * newer Stowage) are kept verbatim and in place across rewrites.
 *
 * `maintenance-mode` stays the raw property string here: a value that does not parse must not make
 * the whole file unreadable (the operator could not fix it through the API), and must not read as
 * "no maintenance" either; the maintenance layer parses it and refuses that one datastore.
 */
import { createHash } from 'node:crypto';
import { closeSync, fstatSync, mkdirSync, openSync, readFileSync, type BigIntStats } from 'node:fs';
import { isAbsolute, join } from 'node:path';
import { SAFE_ID_REGEX, validateDatastoreName as validateName } from '../api-types/names.js';
import { BadConfigError, BadRequestError, ConfigModifiedError } from '../errors.js';
import { DEFAULT_LOCK_TIMEOUT_MS, acquireFileLock, type FileLock } from '../sys/file-lock.js';
import { replaceFile } from '../sys/atomic-file.js';
import { parsePropertyString } from './property-string.js';
import { formatSectionConfig, parseSectionConfig, sectionLine, type Section } from './section-config.js';

export interface DatastoreConfig {
  name: string;
  /**
   * Absolute path of the datastore's base directory; for a removable datastore (PBS 3.3+, with
   * `backing-device`) the path relative to the device's root instead.
   */
  path: string;
  comment?: string;
  'gc-schedule'?: string;
  /** Raw PBS property string, e.g. `read-only,message="disk swap"`; parsed by the maintenance layer. */
  'maintenance-mode'?: string;
  tuning?: string;
  'verify-new'?: boolean;
  'notify-user'?: string;
  'notification-mode'?: string;
  /**
   * PBS 3.3+: the filesystem UUID of a removable datastore's device, mounted (as by PBS) at
   * `/mnt/datastore/NAME` (datastoreMountDir); operations are admitted only while it is mounted.
   */
  'backing-device'?: string;
  /**
   * Stowage extension (PBS refuses a datastore.cfg carrying it, docs/pbs-compatibility.md): the
   * low-space hold engages when the filesystem has less than this percent free (0 disables it;
   * default LOW_SPACE_DEFAULTS). See src/maintenance/low-space-hold.ts.
   */
  'low-space-hold'?: number;
  /** Stowage extension: the low-space hold lifts once more than this percent is free (> the hold). */
  'low-space-release'?: number;
  /**
   * PBS 4: the backend property string, e.g. `bucket=pbs,client=aws-s3,type=s3` (`type` defaults
   * to `filesystem`). Stowage loads an S3 datastore but refuses to open it (its `path` is only the
   * local cache; opening it as a datastore would serve a partial, stale copy).
   */
  backend?: string;
  /**
   * Properties Stowage does not know (e.g. PBS's `notify`, `gc-on-unmount`, `keep-*`), in file
   * order, written back unchanged. Drop an entry to delete the property.
   */
  extra?: Array<[key: string, value: string]>;
}

export interface DatastoreConfigSnapshot {
  /** In file order. The config objects are frozen: copy one before changing it. */
  stores: Map<string, DatastoreConfig>;
  /** Hex SHA-256 of the raw file bytes (of '' when the file is missing), as PBS's `digest`. */
  digest: string;
  raw: string;
}

/** PBS safe-id (`pbs-api-types`); a datastore name is one of 3–32 characters (reference §7.1). */
export const DATASTORE_NAME_RE: RegExp = SAFE_ID_REGEX;

/** Throws BadRequestError ("invalid datastore name 'x': ...") unless `name` is a valid PBS datastore name. */
export function validateDatastoreName(name: string): void {
  validateName(name, 'datastore name');
}

type StringKey =
  | 'path'
  | 'comment'
  | 'gc-schedule'
  | 'maintenance-mode'
  | 'tuning'
  | 'notify-user'
  | 'notification-mode'
  | 'backing-device'
  | 'backend';

/** Typed keys in the order a new section is written (path first, as an operator reads it). */
const STRING_KEYS: readonly StringKey[] = [
  'path',
  'backing-device',
  'backend',
  'comment',
  'gc-schedule',
  'maintenance-mode',
  'notification-mode',
  'notify-user',
  'tuning',
];
/** Stowage's own percent properties: integers 0–100, written only when set (PBS rejects them). */
export const PERCENT_KEYS = ['low-space-hold', 'low-space-release'] as const;
export type PercentKey = (typeof PERCENT_KEYS)[number];
const KNOWN_KEYS: ReadonlySet<string> = new Set<string>([...STRING_KEYS, 'verify-new', ...PERCENT_KEYS]);

/** The low-space thresholds a datastore has when its configuration names none (Elasticsearch's 95%/90% used). */
export const LOW_SPACE_DEFAULTS: Readonly<Record<PercentKey, number>> = {
  'low-space-hold': 5,
  'low-space-release': 10,
};

function isPercentKey(key: string): key is PercentKey {
  return (PERCENT_KEYS as readonly string[]).includes(key);
}

/**
 * The problem with a datastore's low-space thresholds, or undefined: each an integer 0–100, and
 * release above hold (hysteresis) unless the hold is disabled (0). Checked with the defaults
 * filled in, so `low-space-hold 12` alone is refused (the default release 10 is below it).
 */
export function lowSpaceProblem(config: Pick<DatastoreConfig, PercentKey>): string | undefined {
  for (const key of PERCENT_KEYS) {
    const v = config[key];
    if (v !== undefined && (!Number.isInteger(v) || v < 0 || v > 100)) {
      return `'${key}' must be an integer percent from 0 to 100, not '${String(v)}'`;
    }
  }
  const hold = config['low-space-hold'] ?? LOW_SPACE_DEFAULTS['low-space-hold'];
  const release = config['low-space-release'] ?? LOW_SPACE_DEFAULTS['low-space-release'];
  if (hold !== 0 && release <= hold) {
    return `'low-space-release' (${release}) must be above 'low-space-hold' (${hold})`;
  }
  return undefined;
}

// proxmox-schema's parse_boolean accepts these, case-insensitively; we write true/false as PBS does.
const TRUE_WORDS = new Set(['1', 'true', 'yes', 'on']);
const FALSE_WORDS = new Set(['0', 'false', 'no', 'off']);

/** A parsed file: typed stores, plus the sections they came from (for key order on rewrite). */
export interface ParsedDatastoreConfig {
  stores: Map<string, DatastoreConfig>;
  sections: Section[];
}

/**
 * Parse `datastore.cfg` text. Every problem is a BadConfigError naming `file` and the line, never
 * an empty or partial config: a datastore silently missing would look like "deleted".
 */
export function parseDatastoreConfig(text: string, file = 'datastore.cfg'): ParsedDatastoreConfig {
  const sections = parseSectionConfig(text, file);
  const stores = new Map<string, DatastoreConfig>();
  for (const section of sections) {
    const at = (key?: string) => `${file} line ${sectionLine(section, key) ?? '?'}`;
    if (section.type !== 'datastore') {
      throw new BadConfigError(`${at()}: unexpected section type '${section.type}' (expected 'datastore')`);
    }
    try {
      validateDatastoreName(section.id);
    } catch (err) {
      throw new BadConfigError(`${at()}: ${(err as Error).message}`);
    }
    // section-config already refuses a repeated `datastore: X` header; names are case-sensitive as in PBS
    const config: DatastoreConfig = { name: section.id, path: '' };
    const extra: Array<[string, string]> = [];
    for (const [key, value] of section.props) {
      if (key === 'verify-new') {
        const word = value.toLowerCase();
        if (TRUE_WORDS.has(word)) config['verify-new'] = true;
        else if (FALSE_WORDS.has(word)) config['verify-new'] = false;
        else throw new BadConfigError(`${at(key)}: 'verify-new' must be true or false, not '${value}'`);
      } else if (isPercentKey(key)) {
        if (!/^[0-9]{1,3}$/.test(value)) {
          throw new BadConfigError(
            `${at(key)}: '${key}' must be an integer percent from 0 to 100, not '${value}'`,
          );
        }
        config[key] = Number(value);
      } else if (KNOWN_KEYS.has(key)) {
        if (value !== '') config[key as StringKey] = value;
      } else {
        extra.push([key, value]);
      }
    }
    if (config.path === '') throw new BadConfigError(`${at()}: datastore '${section.id}' has no path`);
    // a removable datastore's path is relative to its device (PBS `DATASTORE_DIR_NAME_SCHEMA`)
    if (config['backing-device'] === undefined && !isAbsolute(config.path)) {
      throw new BadConfigError(
        `${at('path')}: path of datastore '${section.id}' is not absolute: '${config.path}'`,
      );
    }
    const lowSpace = lowSpaceProblem(config);
    if (lowSpace !== undefined) throw new BadConfigError(`${at('low-space-hold')}: ${lowSpace}`);
    if (extra.length > 0) config.extra = extra;
    stores.set(section.id, config);
  }
  return { stores, sections };
}

function checkValue(name: string, key: string, value: unknown): asserts value is string {
  if (typeof value !== 'string') throw new BadRequestError(`datastore '${name}': '${key}' must be a string`);
  if (/[\x00-\x1f\x7f]/.test(value)) {
    throw new BadRequestError(
      `datastore '${name}': '${key}' must not contain control characters or newlines`,
    );
  }
  if (value.trim() !== value) {
    throw new BadRequestError(`datastore '${name}': '${key}' must not start or end with whitespace`);
  }
}

/** Validate one store as a caller built it; BadRequestError names the store and the field. */
export function validateDatastoreConfig(config: DatastoreConfig): void {
  validateDatastoreName(config.name);
  const name = config.name;
  checkValue(name, 'path', config.path);
  if (config.path === '') throw new BadRequestError(`datastore '${name}': path must not be empty`);
  if (config['backing-device'] === undefined && !isAbsolute(config.path)) {
    throw new BadRequestError(`datastore '${name}': path must be absolute, not '${config.path}'`);
  }
  for (const key of STRING_KEYS) {
    if (config[key] !== undefined) checkValue(name, key, config[key]);
  }
  for (const key of Object.keys(config)) {
    // a typo such as `gc_schedule` would otherwise vanish silently on write
    if (key !== 'name' && key !== 'extra' && !KNOWN_KEYS.has(key)) {
      throw new BadRequestError(
        `datastore '${name}': unknown property '${key}' (unknown properties belong in extra)`,
      );
    }
  }
  const verifyNew = config['verify-new'];
  if (verifyNew !== undefined && typeof verifyNew !== 'boolean') {
    throw new BadRequestError(`datastore '${name}': 'verify-new' must be a boolean`);
  }
  const lowSpace = lowSpaceProblem(config);
  if (lowSpace !== undefined) throw new BadRequestError(`datastore '${name}': ${lowSpace}`);
  const seen = new Set<string>();
  for (const entry of config.extra ?? []) {
    const [key, value] = entry;
    if (typeof key !== 'string' || !/^[a-z][a-z0-9_-]*$/i.test(key)) {
      throw new BadRequestError(`datastore '${name}': invalid property name '${String(key)}'`);
    }
    if (KNOWN_KEYS.has(key) || seen.has(key)) {
      throw new BadRequestError(`datastore '${name}': property '${key}' is given twice`);
    }
    seen.add(key);
    checkValue(name, key, value);
  }
}

function typedValue(config: DatastoreConfig, key: string): string | undefined {
  if (key === 'verify-new') {
    const v = config['verify-new'];
    return v === undefined ? undefined : String(v);
  }
  if (isPercentKey(key)) {
    const v = config[key];
    return v === undefined ? undefined : String(v);
  }
  const v = config[key as StringKey];
  return v === '' ? undefined : v; // an empty value would make the file unreadable for PBS
}

/**
 * Serialize stores (in map order) after validating each one. A store that was in `previous`
 * keeps its properties' order, unknown ones included, so a one-field change is a one-line diff;
 * new properties go after them.
 */
export function formatDatastoreConfig(
  stores: ReadonlyMap<string, DatastoreConfig>,
  previous: readonly Section[] = [],
): string {
  const sections: Section[] = [];
  for (const [id, config] of stores) {
    validateDatastoreConfig(config);
    if (id !== config.name) {
      throw new BadRequestError(`datastore '${config.name}' is stored under the different name '${id}'`);
    }
    const old = previous.find((s) => s.type === 'datastore' && s.id === id);
    const extra = new Map(config.extra ?? []);
    const props: Array<[string, string]> = [];
    const emitted = new Set<string>();
    const emit = (key: string) => {
      if (emitted.has(key)) return;
      const value = KNOWN_KEYS.has(key) ? typedValue(config, key) : extra.get(key);
      if (value !== undefined) props.push([key, value]);
      emitted.add(key);
    };
    for (const [key] of old?.props ?? []) emit(key);
    for (const key of [...STRING_KEYS, 'verify-new', ...PERCENT_KEYS, ...extra.keys()]) emit(key);
    sections.push({ type: 'datastore', id, props });
  }
  return formatSectionConfig(sections);
}

/** Where PBS mounts removable datastores: `/mnt/datastore/NAME` (`DATASTORE_MOUNT_DIR`). */
export const DATASTORE_MOUNT_DIR = '/mnt/datastore';

/**
 * The directory removable datastores are mounted under: PBS's `/mnt/datastore`, unless
 * `STOWAGE_DATASTORE_MOUNT_DIR` names another (tests, a host where /mnt is not writable). Read at
 * each call, so it is one setting for the whole process.
 */
export function datastoreMountDir(): string {
  return process.env.STOWAGE_DATASTORE_MOUNT_DIR || DATASTORE_MOUNT_DIR;
}

/**
 * The directory a datastore's content is in, as PBS's `DataStoreConfig::absolute_path`: a
 * removable datastore's mount point, otherwise its `path`. A string only; nothing is looked at.
 */
export function datastoreAbsolutePath(config: DatastoreConfig): string {
  return config['backing-device'] !== undefined ? `${datastoreMountDir()}/${config.name}` : config.path;
}

/** PBS 4 `DatastoreBackendConfig`: the `backend` property string, parsed. */
export interface DatastoreBackend {
  /** `filesystem` (the default) or `s3`; another value is what a newer PBS wrote. */
  type: string;
  client?: string;
  bucket?: string;
  'max-cache-size'?: string;
}

const BACKEND_KEYS = new Set(['type', 'client', 'bucket', 'max-cache-size']);

/**
 * Parse a datastore's `backend` (PBS `DatastoreBackendConfig::from_str`: default key `type`,
 * default type `filesystem`, s3 needs `client` and `bucket`, filesystem takes neither). Throws
 * BadConfigError naming the datastore; a missing `backend` is the filesystem backend.
 */
export function parseDatastoreBackend(config: DatastoreConfig): DatastoreBackend {
  if (config.backend === undefined) return { type: 'filesystem' };
  const fail = (why: string): never => {
    throw new BadConfigError(`datastore '${config.name}': invalid backend '${config.backend}': ${why}`);
  };
  let entries: Array<[string, string]> = [];
  try {
    entries = parsePropertyString(config.backend, { defaultKey: 'type', name: 'backend' });
  } catch (err) {
    fail((err as Error).message);
  }
  const out: DatastoreBackend = { type: 'filesystem' };
  for (const [key, value] of entries) {
    if (!BACKEND_KEYS.has(key)) fail(`unknown property '${key}'`);
    (out as unknown as Record<string, string>)[key] = value;
  }
  if (out.type === 's3') {
    if (out.client === undefined) fail('missing option client, required for backend type s3');
    if (out.bucket === undefined) fail('missing option bucket, required for backend type s3');
  } else if (out.type === 'filesystem') {
    for (const key of ['client', 'bucket', 'max-cache-size'] as const) {
      if (out[key] !== undefined) fail(`additional option ${key}, not allowed for backend type filesystem`);
    }
  }
  return out;
}

/**
 * A PBS feature a datastore uses that this Stowage version cannot serve, with the parameter that
 * says so, or undefined for a plain filesystem datastore. Pure: decided from the config alone.
 */
export function unsupportedDatastoreFeature(
  config: DatastoreConfig,
): { param: 'backing-device' | 'backend'; what: string } | undefined {
  // removable datastores are served (src/maintenance/removable-datastore.ts) while mounted
  if (config.backend === undefined) return undefined;
  let type: string;
  try {
    type = parseDatastoreBackend(config).type;
  } catch (err) {
    return { param: 'backend', what: `a datastore with an unreadable backend (${(err as Error).message})` };
  }
  // S3 datastores are served (src/maintenance/chunk-backend-for.ts) when their endpoint is configured
  if (type === 'filesystem' || type === 's3') return undefined;
  return { param: 'backend', what: `a datastore with backend type '${type}'` };
}

function sha256Hex(data: Buffer | string): string {
  return createHash('sha256').update(data).digest('hex');
}

function freeze(stores: Map<string, DatastoreConfig>): Map<string, DatastoreConfig> {
  for (const config of stores.values()) {
    if (config.extra) {
      for (const entry of config.extra) Object.freeze(entry);
      Object.freeze(config.extra);
    }
    Object.freeze(config);
  }
  return stores;
}

/**
 * A file's content is trusted from the cache only once its timestamps are older than this:
 * Linux stamps files with a coarse clock, so two replacements within one tick can leave size,
 * mtime and ctime equal, and the second can even reuse the first's freed inode ("racy git").
 */
const RACY_WINDOW_NS = 2_000_000_000n;

/**
 * Where a process reads and changes the datastore configuration: `datastore.cfg` on one host
 * (DatastoreConfigFile), or the cluster's configuration in etcd in cluster mode
 * (src/maintenance/etcd-datastore-config.ts). Reads are synchronous (every request reads the
 * config); `update` is the one way to change it, atomic against concurrent changes.
 */
export interface DatastoreConfigSource {
  /** The instance's config dir (s3.cfg, credentials): local files in either case. */
  readonly configDir: string;
  /** The configuration now (in cluster mode: as this process last learned it, milliseconds behind). */
  read(): DatastoreConfigSnapshot;
  /** Like read(), for hot paths. */
  readCached(): DatastoreConfigSnapshot;
  /**
   * Read-modify-write: `mutate` gets fresh unfrozen copies; with `digest`, a configuration that
   * changed since the caller read it is refused with ConfigModifiedError. Returns what is stored now.
   */
  update(
    mutate: (stores: Map<string, DatastoreConfig>) => void,
    opts?: { digest?: string; lockHeld?: boolean; lockTimeoutMs?: number },
  ): Promise<DatastoreConfigSnapshot>;
  /** Stop following the configuration (the etcd watch); the file has nothing to close. */
  close?(): void;
}

/** `datastore.cfg` in one config directory; see the module comment for the locking rules. */
export class DatastoreConfigFile implements DatastoreConfigSource {
  readonly path: string;
  readonly lockPath: string;
  private cache: { key: string; trusted: boolean; snapshot: DatastoreConfigSnapshot } | undefined;

  private readonly racyWindowNs: bigint;

  /** `racyWindowMs` exists for tests; the default suits every real filesystem clock. */
  constructor(
    readonly configDir: string,
    opts: { racyWindowMs?: number } = {},
  ) {
    this.path = join(configDir, 'datastore.cfg');
    this.lockPath = join(configDir, '.datastore.lck');
    this.racyWindowNs =
      opts.racyWindowMs === undefined ? RACY_WINDOW_NS : BigInt(opts.racyWindowMs) * 1_000_000n;
  }

  /** Read and parse the file now, without the lock; a missing file is an empty config. */
  read(): DatastoreConfigSnapshot {
    return this.snapshot(readWithStat(this.path).data!);
  }

  /**
   * Like read(), but parses again only when the file changed (inode, size, mtime or ctime; a
   * writer's rename always brings a new inode), and trusts the cached copy only once the file's
   * timestamps are older than the racy window. One fstat per call: cheap enough for every request.
   */
  readCached(): DatastoreConfigSnapshot {
    const cached = this.cache;
    const { data, key, stat } = readWithStat(this.path, cached?.trusted ? cached.key : undefined);
    if (data === undefined) return cached!.snapshot;
    const snapshot = this.snapshot(data);
    const trusted = stat === undefined || nowNs() - maxTime(stat) > this.racyWindowNs;
    this.cache = { key, trusted, snapshot };
    return snapshot;
  }

  /**
   * Take the exclusive config lock (PBS waits 10 s, reference §1.4). Hold it across a check and
   * the change that depends on it; update() takes it itself unless told it is held.
   */
  lock(timeoutMs: number = DEFAULT_LOCK_TIMEOUT_MS): Promise<FileLock> {
    return acquireFileLock(this.lockPath, { timeoutMs });
  }

  /**
   * Read-modify-write under the lock. With `digest`, refuses with ConfigModifiedError when the
   * file changed since the caller read it (PBS's stale-digest check, §6.1). `mutate` gets fresh,
   * unfrozen copies; if it throws, or the result does not validate, nothing is written. Returns the
   * snapshot of what is now on disk. An unchanged result is not rewritten.
   */
  async update(
    mutate: (stores: Map<string, DatastoreConfig>) => void,
    opts: { digest?: string; lockHeld?: boolean; lockTimeoutMs?: number } = {},
  ): Promise<DatastoreConfigSnapshot> {
    const lock = opts.lockHeld ? undefined : await this.lock(opts.lockTimeoutMs);
    try {
      const raw = readWithStat(this.path).data!;
      const digest = sha256Hex(raw);
      if (opts.digest !== undefined && opts.digest !== digest) throw new ConfigModifiedError();
      const { stores, sections } = parseDatastoreConfig(raw.toString('utf8'), this.path);
      const result: unknown = mutate(stores);
      if (result !== null && typeof (result as { then?: unknown })?.then === 'function') {
        // an async mutate would run after the write; refuse rather than lose its changes
        throw new TypeError('DatastoreConfigFile.update: mutate must be synchronous');
      }
      const text = formatDatastoreConfig(stores, sections);
      const next = this.snapshot(Buffer.from(text, 'utf8'));
      if (next.digest !== digest) {
        mkdirSync(this.configDir, { recursive: true });
        // PBS keeps datastore.cfg 0640 (root:backup)
        replaceFile(this.path, text, { fsync: true, mode: 0o640 });
        this.cache = undefined;
      }
      return next;
    } finally {
      lock?.release();
    }
  }

  private snapshot(data: Buffer): DatastoreConfigSnapshot {
    const raw = data.toString('utf8');
    const { stores } = parseDatastoreConfig(raw, this.path);
    return { stores: freeze(stores), digest: sha256Hex(data), raw };
  }
}

/**
 * A file's bytes with the stat of the very inode they were read from (fstat on the open
 * descriptor, so content and stat never come from two versions). `data` is undefined only when
 * the file still matches `unlessKey`; a missing file reads as empty.
 */
function readWithStat(path: string, unlessKey?: string): { data?: Buffer; key: string; stat?: BigIntStats } {
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    const key = statKey(undefined);
    return { data: key === unlessKey ? undefined : Buffer.alloc(0), key };
  }
  try {
    const stat = fstatSync(fd, { bigint: true });
    const key = statKey(stat);
    return { data: key === unlessKey ? undefined : readFileSync(fd), key, stat };
  } finally {
    closeSync(fd);
  }
}

function statKey(stat: BigIntStats | undefined): string {
  return stat ? `${stat.dev}:${stat.ino}:${stat.size}:${stat.mtimeNs}:${stat.ctimeNs}` : 'missing';
}

function maxTime(stat: BigIntStats): bigint {
  return stat.mtimeNs > stat.ctimeNs ? stat.mtimeNs : stat.ctimeNs;
}

/** An upper bound of the current time: Date.now() truncates, file timestamps do not. */
function nowNs(): bigint {
  return BigInt(Date.now() + 1) * 1_000_000n;
}
