/**
 * The notifier: tails the maintenance event log (`events.after(lastId)`, polled about every
 * second from the last event at server start) and sends each event to the targets of every
 * matching matcher (PBS's proxmox-notify matching: severity, fields, mode all/any, invert).
 * It never runs on the admission path: an event is in the log before anyone is notified, and a
 * slow or failing endpoint only delays its own retries (exponential backoff, bounded attempts).
 *
 * Fields a matcher can test: `type` (`maintenance`, or the job type of a job event, so PBS's
 * `exact:type=gc` matches a failed GC), `event` (mode-set, drained, …), `datastore`, `source`,
 * `hostname`.
 */
import { createHmac } from 'node:crypto';
import { hostname } from 'node:os';
import { BadRequestError } from '../errors.js';
import {
  decodeBase64,
  notificationConfig,
  parseFieldMatch,
  parseKeyValue,
  parseSeverityMatch,
  type NotificationEntity,
} from './notification-config.js';

/** The event shape the notifier reads (src/maintenance/maintenance-events.ts). */
export interface NotifiableEvent {
  id: number;
  time: number;
  store: string;
  type: string;
  severity: string;
  source: string;
  authId?: string;
  from?: string;
  to?: string;
  message?: string;
  detail?: Record<string, unknown>;
}

/** The maintenance event log (asynchronous: in cluster mode it is in etcd). */
export interface EventSource {
  after(id: number, limit?: number): Promise<NotifiableEvent[]> | NotifiableEvent[];
  lastId(): Promise<number> | number;
  /**
   * Cluster mode: whether this server tells event `id` (the first server of the cluster to ask
   * does), so that N servers tailing one history send one notification, not N.
   */
  claimDelivery?(id: number): Promise<boolean>;
}

/** What a notification carries, whatever the endpoint. */
export interface Notification {
  title: string;
  message: string;
  severity: string;
  /** Epoch seconds. */
  timestamp: number;
  fields: Record<string, string>;
  /** The JSON document a webhook without a body template posts. */
  document: Record<string, unknown>;
}

export const SIGNATURE_HEADER = 'X-Stowage-Signature';
export const TIMESTAMP_HEADER = 'X-Stowage-Timestamp';

export function notificationFields(e: NotifiableEvent): Record<string, string> {
  const job = e.detail?.job as { type?: unknown } | undefined;
  return {
    type: typeof job?.type === 'string' ? job.type : 'maintenance',
    event: e.type,
    datastore: e.store,
    source: e.source,
    hostname: hostname(),
  };
}

function title(e: NotifiableEvent): string {
  const store = `Datastore '${e.store}'`;
  switch (e.type) {
    case 'test':
      return 'Test notification';
    case 'mode-set':
      return `${store}: maintenance mode set to ${e.to || 'none'}`;
    case 'mode-cleared':
      return `${store}: maintenance mode cleared`;
    case 'drained':
      return `${store}: drained`;
    case 'hold-engaged':
      return `${store}: system hold engaged`;
    case 'hold-released':
      return `${store}: system hold released`;
    case 'window-starting':
      return `${store}: maintenance window starting`;
    case 'job-skipped':
      return `${store}: job skipped`;
    case 'job-failed':
      return `${store}: job failed`;
    default:
      return `${store}: ${e.type}`;
  }
}

export function toNotification(e: NotifiableEvent): Notification {
  const fields = notificationFields(e);
  const t = title(e);
  const lines = [t];
  if (e.from !== undefined) lines.push(`from: ${e.from || 'none'}`);
  if (e.to !== undefined) lines.push(`to: ${e.to || 'none'}`);
  if (e.message) lines.push(`message: ${e.message}`);
  if (e.authId) lines.push(`by: ${e.authId}`);
  return {
    title: t,
    message: lines.join('\n'),
    severity: e.severity,
    timestamp: Math.floor(e.time / 1000),
    fields,
    document: {
      event: e.type,
      datastore: e.store,
      severity: e.severity,
      source: e.source,
      // `mode`: the mode (or hold) in force after the event, as stored ('' = none)
      mode: e.to ?? null,
      from: e.from ?? null,
      message: e.message ?? null,
      time: new Date(e.time).toISOString(),
      timestamp: Math.floor(e.time / 1000),
      id: e.id,
      ...(e.authId !== undefined && { authid: e.authId }),
      ...(e.detail !== undefined && { detail: e.detail }),
      title: t,
      fields,
    },
  };
}

/** Whether a matcher selects a notification (proxmox-notify `matcher.rs`). */
export function matcherMatches(m: NotificationEntity, n: Notification): boolean {
  if (m.props.disable === true) return false;
  const results: boolean[] = [];
  for (const item of (m.props['match-severity'] as string[] | undefined) ?? []) {
    results.push(parseSeverityMatch(item).includes(n.severity));
  }
  for (const rule of (m.props['match-field'] as string[] | undefined) ?? []) {
    const { field, test } = parseFieldMatch(rule);
    results.push(test(n.fields[field]));
  }
  const any = m.props.mode === 'any';
  // no rules: every notification matches (PBS)
  const matched = results.length === 0 ? true : any ? results.some(Boolean) : results.every(Boolean);
  return m.props['invert-match'] === true ? !matched : matched;
}

/**
 * The simple handlebars substitutions PBS documents for webhook templates: `{{ title }}`,
 * `{{ message }}`, `{{ severity }}`, `{{ timestamp }}`, `{{ fields.NAME }}`, `{{ secrets.NAME }}`,
 * and the helpers `{{ json X }}`, `{{ escape X }}` (JSON string escaping) and `{{ url-encode X }}`.
 */
export function renderTemplate(template: string, n: Notification, secrets: Record<string, string>): string {
  const lookup = (path: string): unknown => {
    if (path.startsWith('fields.')) return n.fields[path.slice(7)];
    if (path.startsWith('secrets.')) return secrets[path.slice(8)];
    if (path === 'fields') return n.fields;
    const v = (n as unknown as Record<string, unknown>)[path];
    return path === 'document' ? undefined : v;
  };
  return template.replace(
    /\{\{\s*(?:(json|escape|url-encode)\s+)?([A-Za-z0-9_.-]+)\s*\}\}/g,
    (_m, helper, path) => {
      const v = lookup(path as string);
      if (helper === 'json') return JSON.stringify(v ?? null);
      const s = v === undefined || v === null ? '' : typeof v === 'string' ? v : JSON.stringify(v);
      if (helper === 'escape') return JSON.stringify(s).slice(1, -1);
      if (helper === 'url-encode') return encodeURIComponent(s);
      return s;
    },
  );
}

function secretsOf(e: NotificationEntity): Array<{ name: string; value: string }> {
  return ((e.priv.secret as string[] | undefined) ?? []).map((s) => {
    const kv = parseKeyValue(s, 'secret');
    return { name: kv.name, value: decodeBase64(kv.value ?? '') };
  });
}

/** `sha256=HEX`: HMAC-SHA256 with `key` over `TIMESTAMP.BODY` (the timestamp header's value). */
export function webhookSignature(key: string, timestamp: string, body: string): string {
  return `sha256=${createHmac('sha256', key).update(`${timestamp}.${body}`).digest('hex')}`;
}

const DELIVERY_TIMEOUT_MS = 10_000;

async function sendWebhook(e: NotificationEntity, n: Notification): Promise<void> {
  const secrets = secretsOf(e);
  const secretMap = Object.fromEntries(secrets.map((s) => [s.name, s.value]));
  const method = String(e.props.method ?? 'post').toUpperCase();
  const template = e.props.body as string | undefined;
  const body =
    method === 'GET'
      ? ''
      : template !== undefined
        ? renderTemplate(decodeBase64(template), n, secretMap)
        : JSON.stringify(n.document);
  const headers: Record<string, string> = {};
  if (template === undefined && method !== 'GET') headers['content-type'] = 'application/json';
  for (const h of (e.props.header as string[] | undefined) ?? []) {
    const kv = parseKeyValue(h, 'header');
    headers[kv.name] = renderTemplate(decodeBase64(kv.value ?? ''), n, secretMap);
  }
  const timestamp = String(Math.floor(Date.now() / 1000));
  headers[TIMESTAMP_HEADER] = timestamp;
  if (secrets[0]) headers[SIGNATURE_HEADER] = webhookSignature(secrets[0].value, timestamp, body);
  const url = renderTemplate(String(e.props.url), n, secretMap);
  const res = await fetch(url, {
    method,
    headers,
    ...(method !== 'GET' && { body }),
    signal: AbortSignal.timeout(DELIVERY_TIMEOUT_MS),
  });
  await res.arrayBuffer().catch(() => undefined);
  if (!res.ok) throw new Error(`webhook '${e.name}': HTTP ${res.status} from ${new URL(url).origin}`);
}

const SMTP_DEFAULT_PORT = { insecure: 25, starttls: 587, tls: 465 } as const;

async function sendSmtp(e: NotificationEntity, n: Notification): Promise<void> {
  const mode = (e.props.mode as keyof typeof SMTP_DEFAULT_PORT | undefined) ?? 'tls';
  // loaded on first use: a server without SMTP endpoints never needs it
  const { createTransport } = await import('nodemailer');
  const transport = createTransport({
    host: String(e.props.server),
    port: (e.props.port as number | undefined) ?? SMTP_DEFAULT_PORT[mode],
    secure: mode === 'tls',
    requireTLS: mode === 'starttls',
    ignoreTLS: mode === 'insecure',
    connectionTimeout: DELIVERY_TIMEOUT_MS,
    ...(e.props.username !== undefined && {
      auth: { user: String(e.props.username), pass: String(e.priv.password ?? '') },
    }),
  });
  try {
    await transport.sendMail({
      from: { name: String(e.props.author ?? 'Stowage'), address: String(e.props['from-address']) },
      to: e.props.mailto as string[],
      subject: n.title,
      text: `${n.message}\n`,
    });
  } finally {
    transport.close();
  }
}

export async function deliver(e: NotificationEntity, n: Notification): Promise<void> {
  if (e.type === 'webhook') await sendWebhook(e, n);
  else if (e.type === 'smtp') await sendSmtp(e, n);
}

/** The test call: one delivery now; a failure is a 400 saying why. */
export async function sendTestNotification(e: NotificationEntity): Promise<void> {
  const time = Date.now();
  const n = toNotification({
    id: 0,
    time,
    store: '',
    type: 'test',
    severity: 'info',
    source: 'operator',
    message: `This is a test of the notification target '${e.name}'.`,
  });
  try {
    await deliver(e, n);
  } catch (err) {
    throw new BadRequestError(`could not notify via target(s): ${e.name}: ${(err as Error).message}`);
  }
}

export interface NotifierOptions {
  configDir: string;
  events: EventSource;
  /** Poll interval; default 1000 ms. */
  pollMs?: number;
  /** Attempts per delivery; default 5. */
  maxAttempts?: number;
  /** First retry delay, doubled each time; default 1000 ms. */
  backoffMs?: number;
  log?: { warn(obj: object, msg: string): void };
}

export class Notifier {
  /** Events up to this id were dispatched; undefined until the log answered where it stands. */
  private lastId: number | undefined;
  private timer: NodeJS.Timeout | undefined;
  private readonly pending = new Set<Promise<void>>();
  private readonly retryTimers = new Set<NodeJS.Timeout>();
  private closed = false;

  constructor(private readonly opts: NotifierOptions) {}

  start(): void {
    const tick = async () => {
      if (this.closed) return;
      try {
        // only what happens from now on is told, not the history before the start
        if (this.lastId === undefined) this.lastId = await this.opts.events.lastId();
        else await this.poll();
      } catch (err) {
        this.opts.log?.warn({ err }, 'notifications: cannot read events or configuration');
      }
      if (this.closed) return;
      this.timer = setTimeout(() => void tick(), this.opts.pollMs ?? 1000);
      this.timer.unref();
    };
    void tick();
  }

  /** Dispatch every event since the last poll (exposed for tests of the matching). */
  async poll(): Promise<void> {
    this.lastId ??= await this.opts.events.lastId();
    for (;;) {
      const batch = await this.opts.events.after(this.lastId, 100);
      if (batch.length === 0) return;
      const { entities } = notificationConfig(this.opts.configDir).read();
      for (const event of batch) {
        const n = toNotification(event);
        const targets = new Set<string>();
        for (const m of entities.values()) {
          if (m.type === 'matcher' && matcherMatches(m, n)) {
            for (const t of (m.props.target as string[] | undefined) ?? []) targets.add(t);
          }
        }
        // a failed claim (etcd out of reach) throws before lastId moves: the event is tried again
        const mine =
          targets.size === 0 ||
          !this.opts.events.claimDelivery ||
          (await this.opts.events.claimDelivery(event.id));
        this.lastId = event.id;
        if (!mine) continue; // another server of the cluster tells it
        for (const name of targets) {
          const target = entities.get(name);
          if (target && target.type !== 'matcher' && target.props.disable !== true)
            this.attempt(target, n, 1);
        }
      }
    }
  }

  private attempt(target: NotificationEntity, n: Notification, attempt: number): void {
    const p = deliver(target, n).catch((err: unknown) => {
      const max = this.opts.maxAttempts ?? 5;
      const msg = (err as Error).message;
      if (attempt >= max || this.closed) {
        this.opts.log?.warn(
          { target: target.name, attempt },
          `notification to '${target.name}' failed, giving up: ${msg}`,
        );
        return;
      }
      const delay = (this.opts.backoffMs ?? 1000) * 2 ** (attempt - 1);
      this.opts.log?.warn(
        { target: target.name, attempt },
        `notification to '${target.name}' failed, retrying in ${delay} ms: ${msg}`,
      );
      const t = setTimeout(() => {
        this.retryTimers.delete(t);
        this.attempt(target, n, attempt + 1);
      }, delay);
      t.unref();
      this.retryTimers.add(t);
    });
    this.pending.add(p);
    void p.finally(() => this.pending.delete(p));
  }

  /** Stop polling and retrying; waits for deliveries in flight. */
  async close(): Promise<void> {
    this.closed = true;
    clearTimeout(this.timer);
    for (const t of this.retryTimers) clearTimeout(t);
    await Promise.allSettled([...this.pending]);
  }
}
