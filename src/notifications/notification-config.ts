/**
 * `notifications.cfg` and `notifications-priv.cfg`: notification endpoints and matchers in the
 * format of PBS's proxmox-notify crate, so a PBS operator reads (and can carry over) the same
 * files:
 *
 *   notifications.cfg                            notifications-priv.cfg (mode 0600)
 *   webhook: ops-hook                            webhook: ops-hook
 *   	url https://hooks.example/stowage            	secret name=signing,value=c2VjcmV0
 *   	method post
 *   	header name=X-Team,value=b3Bz               smtp: mail
 *                                                	password hunter2
 *   smtp: mail
 *   	server mail.example
 *   	mode starttls
 *   	from-address stowage@example
 *   	mailto ops@example
 *
 *   matcher: maintenance
 *   	target ops-hook
 *   	target mail
 *   	match-severity warning,error
 *   	mode all
 *
 * Array properties are one line per item (proxmox-section-config). Header and secret values and
 * the webhook body are base64, as in PBS's API and files. Secrets (webhook `secret` values, the
 * SMTP `password`) live only in the private file and are never returned by the API.
 * Names are PBS's ENTITY_NAME_SCHEMA (a safe id of 2 to 32 characters), one namespace for
 * endpoints and matchers (one section-config file).
 */
import { createHash } from 'node:crypto';
import { chmodSync, mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { SAFE_ID_REGEX } from '../api-types/names.js';
import { BadConfigError, BadRequestError, ConfigModifiedError } from '../errors.js';
import { replaceFile } from '../sys/atomic-file.js';
import { withFileLock } from '../sys/file-lock.js';
import { formatSectionConfig, parseSectionConfig, type Section } from '../config/section-config.js';

export const NOTIFICATION_CONFIG = 'notifications.cfg';
export const NOTIFICATION_PRIV_CONFIG = 'notifications-priv.cfg';
const LOCK = '.notifications.lck';

export const ENTITY_TYPES = ['webhook', 'smtp', 'matcher'] as const;
export type EntityType = (typeof ENTITY_TYPES)[number];

export const SEVERITIES = ['info', 'notice', 'warning', 'error', 'unknown'] as const;
export const WEBHOOK_METHODS = ['post', 'put', 'get'] as const;
export const SMTP_MODES = ['insecure', 'starttls', 'tls'] as const;
export const MATCHER_MODES = ['all', 'any'] as const;

type Kind = 'string' | 'list' | 'bool' | 'port' | readonly string[];

/** Typed public properties of each section type, in the order a new section is written. */
export const ENTITY_PROPS: Record<EntityType, ReadonlyArray<readonly [string, Kind]>> = {
  webhook: [
    ['url', 'string'],
    ['method', WEBHOOK_METHODS],
    ['header', 'list'],
    ['body', 'string'],
    ['comment', 'string'],
    ['disable', 'bool'],
  ],
  smtp: [
    ['server', 'string'],
    ['port', 'port'],
    ['mode', SMTP_MODES],
    ['username', 'string'],
    ['from-address', 'string'],
    ['mailto', 'list'],
    ['author', 'string'],
    ['comment', 'string'],
    ['disable', 'bool'],
  ],
  matcher: [
    ['target', 'list'],
    ['match-severity', 'list'],
    ['match-field', 'list'],
    ['mode', MATCHER_MODES],
    ['invert-match', 'bool'],
    ['comment', 'string'],
    ['disable', 'bool'],
  ],
};

/** Private properties (notifications-priv.cfg), per type. */
export const PRIVATE_PROPS: Record<EntityType, ReadonlyArray<readonly [string, Kind]>> = {
  webhook: [['secret', 'list']],
  smtp: [['password', 'string']],
  matcher: [],
};

const REQUIRED: Record<EntityType, readonly string[]> = {
  webhook: ['url', 'method'],
  smtp: ['server', 'from-address', 'mailto'],
  matcher: [],
};

const REPEATABLE = new Set(['header', 'secret', 'mailto', 'target', 'match-severity', 'match-field']);

export type EntityValue = string | string[] | boolean | number;

export interface NotificationEntity {
  type: EntityType;
  name: string;
  /** Public properties, typed. */
  props: Record<string, EntityValue>;
  /** Private properties: `secret` (list of `name=..,value=base64`), `password`. */
  priv: Record<string, EntityValue>;
}

/** PBS ENTITY_NAME_SCHEMA: SAFE_ID_FORMAT, 2 to 32 characters. */
export function validateEntityName(name: unknown, param = 'name'): string {
  if (typeof name !== 'string' || !SAFE_ID_REGEX.test(name) || name.length < 2 || name.length > 32) {
    throw new BadRequestError(
      `invalid ${param} '${String(name)}': must be 2 to 32 characters of A-Z a-z 0-9 _ . - (not starting with . or -)`,
      { param },
    );
  }
  return name;
}

/** Parse `name=..,value=..` (PBS KeyAndBase64Val); value optional (API updates keep the old one). */
export function parseKeyValue(raw: string, param: string): { name: string; value?: string } {
  const out: Record<string, string> = {};
  for (const part of raw.split(',')) {
    const eq = part.indexOf('=');
    if (eq <= 0)
      throw new BadRequestError(`invalid ${param} '${raw}': expected name=NAME,value=BASE64`, { param });
    out[part.slice(0, eq).trim()] = part.slice(eq + 1).trim();
  }
  const keys = Object.keys(out);
  if (!out.name || keys.some((k) => k !== 'name' && k !== 'value')) {
    throw new BadRequestError(`invalid ${param} '${raw}': expected name=NAME,value=BASE64`, { param });
  }
  if (out.value !== undefined) checkBase64(out.value, param);
  return { name: out.name, ...(out.value !== undefined && { value: out.value }) };
}

function checkBase64(value: string, param: string): void {
  if (!/^[A-Za-z0-9+/]*={0,2}$/.test(value) || value.length % 4 !== 0) {
    throw new BadRequestError(`invalid ${param}: value must be base64`, { param });
  }
}

export function decodeBase64(value: string): string {
  return Buffer.from(value, 'base64').toString('utf8');
}

const bad = (key: string, value: unknown, why: string) =>
  new BadRequestError(`invalid ${key} '${String(value)}': ${why}`, { param: key });

function checkString(key: string, value: unknown): string {
  if (typeof value !== 'string') throw bad(key, value, 'must be a string');
  if (/[\x00-\x1f\x7f]/.test(value)) throw bad(key, value, 'must not contain control characters');
  if (value.trim() !== value || value === '')
    throw bad(key, value, 'must not be empty or start or end with whitespace');
  return value;
}

function checkValue(type: EntityType, key: string, kind: Kind, value: unknown): void {
  if (Array.isArray(kind)) {
    if (typeof value !== 'string' || !kind.includes(value))
      throw bad(key, value, `must be one of ${kind.join(', ')}`);
    return;
  }
  switch (kind) {
    case 'bool':
      if (typeof value !== 'boolean') throw bad(key, value, 'must be a boolean');
      return;
    case 'port':
      if (typeof value !== 'number' || !Number.isInteger(value) || value < 1 || value > 65535) {
        throw bad(key, value, 'must be a port number (1 to 65535)');
      }
      return;
    case 'list':
      if (!Array.isArray(value)) throw bad(key, value, 'must be a list');
      for (const item of value) checkListItem(type, key, checkString(key, item));
      return;
    default:
      checkString(key, value);
      if (key === 'url') checkUrl(value as string);
      if (key === 'body') checkBase64(value as string, key);
  }
}

function checkUrl(url: string): void {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw bad('url', url, 'must be an http or https URL');
  }
  if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:')
    throw bad('url', url, 'must be an http or https URL');
}

/** A `match-field` rule (PBS): `exact:FIELD=V1,V2` or `regex:FIELD=REGEX`. */
export function parseFieldMatch(rule: string): { field: string; test: (v: string | undefined) => boolean } {
  const m = /^(exact|regex):([A-Za-z0-9_-]+)=(.*)$/.exec(rule);
  if (!m) throw bad('match-field', rule, 'expected exact:FIELD=VALUE[,VALUE...] or regex:FIELD=REGEX');
  const [, how, field, pattern] = m as unknown as [string, string, string, string];
  if (how === 'exact') {
    const values = pattern.split(',');
    return { field, test: (v) => v !== undefined && values.includes(v) };
  }
  let re: RegExp;
  try {
    re = new RegExp(pattern);
  } catch {
    throw bad('match-field', rule, 'invalid regular expression');
  }
  return { field, test: (v) => v !== undefined && re.test(v) };
}

/** A `match-severity` item: a comma-separated list of severities. */
export function parseSeverityMatch(item: string): string[] {
  const list = item.split(',').map((s) => s.trim());
  for (const s of list) {
    if (!(SEVERITIES as readonly string[]).includes(s)) {
      throw bad('match-severity', item, `each severity must be one of ${SEVERITIES.join(', ')}`);
    }
  }
  return list;
}

function checkListItem(type: EntityType, key: string, item: string): void {
  if (key === 'header' || key === 'secret') parseKeyValue(item, key);
  else if (key === 'match-field') parseFieldMatch(item);
  else if (key === 'match-severity') parseSeverityMatch(item);
  else if (key === 'target') validateEntityName(item, 'target');
  else if (key === 'mailto' && !/^[^\s@]+@[^\s@]+$/.test(item))
    throw bad(key, item, 'must be a mail address');
  void type;
}

/** Validate one entity against its type and the other entities (matcher targets must exist). */
export function validateEntity(
  entity: NotificationEntity,
  all: ReadonlyMap<string, NotificationEntity>,
): void {
  validateEntityName(entity.name);
  const known = new Map([...ENTITY_PROPS[entity.type], ...PRIVATE_PROPS[entity.type]]);
  const values = { ...entity.props, ...entity.priv };
  for (const key of REQUIRED[entity.type]) {
    const v = values[key];
    if (v === undefined || (Array.isArray(v) && v.length === 0)) {
      throw new BadRequestError(`parameter verification failed - '${key}': property is missing`, {
        param: key,
      });
    }
  }
  for (const [key, value] of Object.entries(values)) {
    const kind = known.get(key);
    if (!kind)
      throw new BadRequestError(`unknown property '${key}' of ${entity.type} '${entity.name}'`, {
        param: key,
      });
    checkValue(entity.type, key, kind, value);
  }
  if (entity.type === 'webhook') {
    for (const s of (entity.priv.secret as string[] | undefined) ?? []) {
      if (parseKeyValue(s, 'secret').value === undefined) {
        throw bad('secret', s.replace(/,value=.*/, ''), 'needs a value');
      }
    }
  }
  if (entity.type === 'matcher') {
    for (const target of (entity.props.target as string[] | undefined) ?? []) {
      const t = all.get(target);
      if (!t || t.type === 'matcher') {
        throw new BadRequestError(
          `parameter verification failed - 'target': target '${target}' does not exist`,
          {
            param: 'target',
          },
        );
      }
    }
  }
}

function typed(kind: Kind, key: string, raw: string, at: string): EntityValue {
  if (kind === 'bool') {
    if (!/^(1|0|true|false|yes|no|on|off)$/i.test(raw))
      throw new BadConfigError(`${at}: '${key}' must be true or false`);
    return /^(1|true|yes|on)$/i.test(raw);
  }
  if (kind === 'port') {
    if (!/^\d+$/.test(raw)) throw new BadConfigError(`${at}: '${key}' must be a number`);
    return Number(raw);
  }
  return raw;
}

function parseFiles(pub: string, priv: string): Map<string, NotificationEntity> {
  const entities = new Map<string, NotificationEntity>();
  const read = (text: string, file: string, props: typeof ENTITY_PROPS, into: 'props' | 'priv') => {
    for (const section of parseSectionConfig(text, file, REPEATABLE)) {
      const type = section.type as EntityType;
      if (!ENTITY_TYPES.includes(type))
        throw new BadConfigError(`${file}: unknown section type '${section.type}'`);
      let entity = entities.get(section.id);
      if (!entity) {
        if (into === 'priv') continue; // a secret left for a removed endpoint: ignored, dropped on the next write
        entity = { type, name: section.id, props: {}, priv: {} };
        entities.set(section.id, entity);
      } else if (into === 'props') throw new BadConfigError(`${file}: duplicate name '${section.id}'`);
      else if (entity.type !== type) continue;
      const known = new Map(props[type]);
      for (const [key, raw] of section.props) {
        const kind = known.get(key);
        const at = `${file} section '${section.id}'`;
        if (!kind) throw new BadConfigError(`${at}: unknown property '${key}'`);
        if (kind === 'list') ((entity[into][key] ??= []) as string[]).push(raw);
        else entity[into][key] = typed(kind, key, raw, at);
      }
    }
  };
  read(pub, NOTIFICATION_CONFIG, ENTITY_PROPS, 'props');
  read(priv, NOTIFICATION_PRIV_CONFIG, PRIVATE_PROPS, 'priv');
  for (const e of entities.values()) {
    try {
      validateEntity(e, entities);
    } catch (err) {
      throw new BadConfigError(`${NOTIFICATION_CONFIG}: ${(err as Error).message}`);
    }
  }
  return entities;
}

function toSections(entities: ReadonlyMap<string, NotificationEntity>, which: 'props' | 'priv'): Section[] {
  const order = which === 'props' ? ENTITY_PROPS : PRIVATE_PROPS;
  const sections: Section[] = [];
  for (const e of entities.values()) {
    const props: Array<[string, string]> = [];
    for (const [key] of order[e.type]) {
      const v = e[which][key];
      if (v === undefined) continue;
      if (Array.isArray(v)) for (const item of v) props.push([key, item]);
      else props.push([key, String(v)]);
    }
    if (which === 'priv' && props.length === 0) continue;
    sections.push({ type: e.type, id: e.name, props });
  }
  return sections;
}

export interface NotificationSnapshot {
  entities: Map<string, NotificationEntity>;
  /** Hex SHA-256 of notifications.cfg, PBS's `digest`. */
  digest: string;
}

/** The two notification files of one config directory. */
export class NotificationConfigFile {
  readonly path: string;
  readonly privPath: string;
  private readonly lockPath: string;

  constructor(readonly configDir: string) {
    this.path = join(configDir, NOTIFICATION_CONFIG);
    this.privPath = join(configDir, NOTIFICATION_PRIV_CONFIG);
    this.lockPath = join(configDir, LOCK);
  }

  private static readRaw(path: string): string {
    try {
      return readFileSync(path, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return '';
      throw err;
    }
  }

  read(): NotificationSnapshot {
    const raw = NotificationConfigFile.readRaw(this.path);
    const priv = NotificationConfigFile.readRaw(this.privPath);
    return { entities: parseFiles(raw, priv), digest: createHash('sha256').update(raw).digest('hex') };
  }

  /**
   * Read-modify-write both files under one lock; with `digest`, ConfigModifiedError when
   * notifications.cfg changed since the caller read it. Every entity is validated before anything
   * is written; the private file is written first and never readable by others.
   */
  async update<R>(
    mutate: (entities: Map<string, NotificationEntity>) => R,
    opts: { digest?: string } = {},
  ): Promise<R> {
    return withFileLock(this.lockPath, () => {
      const { entities, digest } = this.read();
      if (opts.digest !== undefined && opts.digest !== digest) throw new ConfigModifiedError();
      const result = mutate(entities);
      for (const e of entities.values()) validateEntity(e, entities);
      mkdirSync(this.configDir, { recursive: true });
      replaceFile(this.privPath, formatSectionConfig(toSections(entities, 'priv'), REPEATABLE), {
        fsync: true,
        mode: 0o600,
      });
      chmodSync(this.privPath, 0o600);
      replaceFile(this.path, formatSectionConfig(toSections(entities, 'props'), REPEATABLE), {
        fsync: true,
        mode: 0o640,
      });
      return result;
    });
  }
}

export const notificationConfig = (configDir: string) => new NotificationConfigFile(configDir);
