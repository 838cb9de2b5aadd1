/**
 * `remote.cfg`: the other backup servers sync jobs pull from and push to, in PBS's section-config
 * format (`pbs-api-types` `Remote`, `pbs-config/src/remote.rs`), so a PBS operator can read it:
 *
 *   remote: offsite
 *   	host pbs2.example.com
 *   	port 8007
 *   	auth-id sync@pbs!pull
 *   	password c2VjcmV0
 *   	fingerprint 64:d3:...:6b
 *   	comment second site
 *
 * The password (or API token secret) is stored base64-encoded as PBS stores it — an encoding,
 * not a protection — so the file is written mode 0600 (PBS: 0640 root:backup), never world-
 * or group-readable, and the API never returns it. Writers serialize through `.remote.lck`,
 * check the caller's digest (hex SHA-256 of the raw file, as PBS) and replace the file
 * atomically; properties this version does not know are kept verbatim.
 */
import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { SAFE_ID_REGEX } from '../api-types/names.js';
import { BadConfigError, BadRequestError, ConfigModifiedError } from '../errors.js';
import { replaceFile } from '../sys/atomic-file.js';
import { withFileLock } from '../sys/file-lock.js';
import { formatSectionConfig, parseSectionConfig, sectionLine, type Section } from './section-config.js';
import { parseAuthId } from './user-config.js';

/** What the API shows of a remote (PBS `RemoteWithoutPassword`). */
export interface RemoteInfo {
  name: string;
  host: string;
  port?: number;
  'auth-id': string;
  /** SHA-256 certificate fingerprint, `aa:bb:...` (for a self-signed certificate). */
  fingerprint?: string;
  comment?: string;
  'use-node-proxy'?: boolean;
}

/** A remote with its secret (plain text in memory, base64 in the file). */
export interface RemoteConfig extends RemoteInfo {
  password: string;
  /** Properties Stowage does not know, written back unchanged. */
  extra?: Array<[key: string, value: string]>;
}

export const REMOTE_DEFAULT_PORT = 8007;

const FILE = 'remote.cfg';
const LOCK = '.remote.lck';
const SECTION_TYPE = 'remote';

/** PBS `DNS_NAME_OR_IP_SCHEMA`: a DNS name, an IPv4 address or an IPv6 address (bare or in brackets). */
const DNS_NAME =
  /^(?:(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)\.)*(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)$/;
const IPV4 = /^(?:(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)$/;
const IPV6 = /^\[?[0-9a-fA-F:.]*:[0-9a-fA-F:.]*\]?$/;
/** PBS `CERT_FINGERPRINT_SHA256_SCHEMA`: 32 hex bytes separated by colons. */
export const FINGERPRINT_REGEX = /^(?:[0-9a-fA-F]{2}:){31}[0-9a-fA-F]{2}$/;

export function validateRemoteName(name: unknown, param = 'name'): string {
  if (typeof name !== 'string' || !SAFE_ID_REGEX.test(name) || name.length < 3 || name.length > 32) {
    throw new BadRequestError(
      `invalid remote name '${String(name)}': must be 3 to 32 characters of A-Z a-z 0-9 _ . - (not starting with . or -)`,
      { param },
    );
  }
  return name;
}

/** The problem with one field of a remote, or undefined (checked on every write and read). */
function fieldProblem(key: string, value: unknown): string | undefined {
  switch (key) {
    case 'host':
      return typeof value === 'string' &&
        value.length <= 255 &&
        (DNS_NAME.test(value) || IPV4.test(value) || IPV6.test(value))
        ? undefined
        : 'must be a DNS name or an IP address';
    case 'port':
      return Number.isInteger(value) && (value as number) >= 1 && (value as number) <= 65535
        ? undefined
        : 'must be a port number from 1 to 65535';
    case 'auth-id':
      return typeof value === 'string' && parseAuthId(value)
        ? undefined
        : 'must be user@realm or user@realm!token';
    case 'fingerprint':
      return typeof value === 'string' && FINGERPRINT_REGEX.test(value)
        ? undefined
        : 'must be a SHA-256 fingerprint (32 hex bytes separated by colons)';
    case 'password':
      return typeof value === 'string' &&
        value.length >= 1 &&
        value.length <= 1024 &&
        !/[\x00-\x1f\x7f]/.test(value)
        ? undefined
        : 'must be 1 to 1024 characters without control characters';
    case 'comment':
      return typeof value === 'string' && value.length <= 128 && !/[\x00-\x1f\x7f]/.test(value)
        ? undefined
        : 'must be one line of at most 128 characters';
    default:
      return undefined;
  }
}

/** Check a remote before it is written: 400 naming the first bad field. */
export function validateRemote(remote: RemoteConfig): void {
  validateRemoteName(remote.name);
  for (const key of ['host', 'auth-id', 'password'] as const) {
    if (remote[key] === undefined) throw new BadRequestError(`missing property '${key}'`, { param: key });
  }
  for (const key of ['host', 'port', 'auth-id', 'fingerprint', 'password', 'comment'] as const) {
    const value = remote[key];
    if (value === undefined) continue;
    const problem = fieldProblem(key, value);
    if (problem) throw new BadRequestError(`invalid ${key} '${String(value)}': ${problem}`, { param: key });
  }
}

function decodePassword(b64: string, where: string): string {
  if (!/^[A-Za-z0-9+/]*={0,2}$/.test(b64)) throw new BadConfigError(`${where}: password is not base64`);
  return Buffer.from(b64, 'base64').toString('utf8');
}

function parseRemotes(
  text: string,
  file: string,
): { remotes: Map<string, RemoteConfig>; sections: Section[] } {
  const sections = parseSectionConfig(text, file);
  const remotes = new Map<string, RemoteConfig>();
  for (const s of sections) {
    if (s.type !== SECTION_TYPE) continue;
    const where = `${file} line ${sectionLine(s) ?? '?'}`;
    const props = new Map(s.props);
    const extra = s.props.filter(
      ([k]) =>
        !['host', 'port', 'auth-id', 'password', 'fingerprint', 'comment', 'use-node-proxy'].includes(k),
    );
    const port = props.get('port');
    const remote: RemoteConfig = {
      name: s.id,
      host: props.get('host') ?? '',
      'auth-id': props.get('auth-id') ?? '',
      password: decodePassword(props.get('password') ?? '', where),
      ...(port !== undefined && { port: Number(port) }),
      ...(props.has('fingerprint') && { fingerprint: props.get('fingerprint')! }),
      ...(props.has('comment') && { comment: props.get('comment')! }),
      ...(props.has('use-node-proxy') && { 'use-node-proxy': props.get('use-node-proxy') === 'true' }),
      ...(extra.length > 0 && { extra }),
    };
    try {
      validateRemote(remote);
    } catch (err) {
      throw new BadConfigError(`${where}: remote '${s.id}': ${(err as Error).message}`);
    }
    remotes.set(s.id, remote);
  }
  return { remotes, sections };
}

function formatRemotes(remotes: Map<string, RemoteConfig>, previous: Section[]): string {
  // other section types (none today) stay where they were; remotes follow in map order
  const others = previous.filter((s) => s.type !== SECTION_TYPE);
  const sections: Section[] = [...others];
  for (const r of remotes.values()) {
    validateRemote(r);
    const props: Array<[string, string]> = [['host', r.host]];
    if (r.port !== undefined) props.push(['port', String(r.port)]);
    props.push(['auth-id', r['auth-id']]);
    props.push(['password', Buffer.from(r.password, 'utf8').toString('base64')]);
    if (r.fingerprint !== undefined) props.push(['fingerprint', r.fingerprint]);
    if (r['use-node-proxy'] !== undefined) props.push(['use-node-proxy', String(r['use-node-proxy'])]);
    if (r.comment !== undefined) props.push(['comment', r.comment]);
    props.push(...(r.extra ?? []));
    sections.push({ type: SECTION_TYPE, id: r.name, props });
  }
  return formatSectionConfig(sections);
}

const sha256Hex = (text: string) => createHash('sha256').update(text).digest('hex');

/** The API's view of a remote: everything but the secret and the unknown properties. */
export function remoteInfo(r: RemoteConfig): RemoteInfo {
  const { password: _password, extra: _extra, ...info } = r;
  return info;
}

export interface RemoteConfigSnapshot {
  remotes: Map<string, RemoteConfig>;
  /** Hex SHA-256 of the raw file, PBS's `digest`. */
  digest: string;
}

/** `remote.cfg` of one config directory. */
export class RemoteConfigFile {
  readonly path: string;
  readonly lockPath: string;

  constructor(readonly configDir: string) {
    this.path = join(configDir, FILE);
    this.lockPath = join(configDir, LOCK);
  }

  private readRaw(): string {
    try {
      return readFileSync(this.path, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return '';
      throw err;
    }
  }

  read(): RemoteConfigSnapshot {
    const raw = this.readRaw();
    return { remotes: parseRemotes(raw, this.path).remotes, digest: sha256Hex(raw) };
  }

  /** One remote with its secret, or undefined. */
  get(name: string): RemoteConfig | undefined {
    return this.read().remotes.get(name);
  }

  /**
   * Read-modify-write under the lock; with `digest`, ConfigModifiedError when the file changed
   * since the caller read it. Nothing is written when `mutate` throws or a remote is invalid.
   */
  async update<R>(
    mutate: (remotes: Map<string, RemoteConfig>) => R,
    opts: { digest?: string } = {},
  ): Promise<R> {
    return withFileLock(this.lockPath, () => {
      const raw = this.readRaw();
      if (opts.digest !== undefined && opts.digest !== sha256Hex(raw)) throw new ConfigModifiedError();
      const { remotes, sections } = parseRemotes(raw, this.path);
      const result = mutate(remotes);
      const text = formatRemotes(remotes, sections);
      if (text !== raw) {
        mkdirSync(this.configDir, { recursive: true });
        replaceFile(this.path, text, { fsync: true, mode: 0o600 });
      }
      return result;
    });
  }
}

export const remoteConfig = (configDir: string) => new RemoteConfigFile(configDir);
