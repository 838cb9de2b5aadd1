/**
 * The notifier against real listeners: an HTTP server and an SMTP server (smtp-server) started
 * here, fed from an event log it tails as the server's notifier does.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { AddressInfo } from 'node:net';
import { SMTPServer } from 'smtp-server';
import { notificationConfig } from '../../src/notifications/notification-config.js';
import {
  Notifier,
  SIGNATURE_HEADER,
  TIMESTAMP_HEADER,
  webhookSignature,
  type NotifiableEvent,
} from '../../src/notifications/notifier.js';

interface Received {
  method: string;
  url: string;
  headers: IncomingMessage['headers'];
  body: string;
}

let dir: string;
let http: Server;
let httpUrl: string;
const received: Received[] = [];
/** Status codes the listener answers `/json` with, in order; 200 once used up. */
const answers: number[] = [];
let smtp: SMTPServer;
let smtpPort: number;
const mails: string[] = [];

class ArrayEventLog {
  readonly events: NotifiableEvent[] = [];
  append(e: Omit<NotifiableEvent, 'id' | 'time'>): NotifiableEvent {
    const full = { ...e, id: this.events.length + 1, time: Date.now() };
    this.events.push(full);
    return full;
  }
  after(id: number, limit = 100) {
    return this.events.filter((e) => e.id > id).slice(0, limit);
  }
  lastId() {
    return this.events.length;
  }
}

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'stowage-notifier-'));
  http = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      received.push({
        method: req.method!,
        url: req.url!,
        headers: req.headers,
        body: Buffer.concat(chunks).toString(),
      });
      res.statusCode = (req.url === '/json' && answers.shift()) || 200;
      res.end();
    });
  });
  await new Promise<void>((r) => http.listen(0, '127.0.0.1', r));
  httpUrl = `http://127.0.0.1:${(http.address() as AddressInfo).port}`;
  smtp = new SMTPServer({
    authOptional: true,
    disabledCommands: ['STARTTLS'],
    onData(stream, _session, cb) {
      const chunks: Buffer[] = [];
      stream.on('data', (c: Buffer) => chunks.push(c));
      stream.on('end', () => {
        mails.push(Buffer.concat(chunks).toString());
        cb();
      });
    },
  });
  await new Promise<void>((r) => smtp.listen(0, '127.0.0.1', r));
  smtpPort = (smtp.server.address() as AddressInfo).port;
});
after(async () => {
  http.close();
  await new Promise<void>((r) => smtp.close(r));
  rmSync(dir, { recursive: true, force: true });
});

const b64 = (s: string) => Buffer.from(s).toString('base64');
async function until<T>(what: string, f: () => T | undefined, ms = 10_000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = f();
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

test('matching events reach webhooks (JSON or template, signed) and SMTP; a 500 is retried with backoff', async () => {
  const configDir = join(dir, 'etc');
  await notificationConfig(configDir).update((m) => {
    m.set('hook', {
      type: 'webhook',
      name: 'hook',
      props: { url: `${httpUrl}/json`, method: 'post' },
      priv: { secret: [`name=signing,value=${b64('s3cret')}`] },
    });
    m.set('tmpl', {
      type: 'webhook',
      name: 'tmpl',
      props: {
        url: `${httpUrl}/tmpl?store={{ url-encode fields.datastore }}`,
        method: 'put',
        header: [`name=X-Sev,value=${b64('{{ severity }}')}`],
        body: b64('{"text":"{{ escape title }}","ds":"{{ fields.datastore }}","k":"{{ secrets.token }}"}'),
      },
      priv: { secret: [`name=token,value=${b64('abc')}`] },
    });
    m.set('mail', {
      type: 'smtp',
      name: 'mail',
      props: {
        server: '127.0.0.1',
        port: smtpPort,
        mode: 'insecure',
        'from-address': 'stowage@example.org',
        mailto: ['ops@example.org'],
      },
      priv: {},
    });
    m.set('warnings', {
      type: 'matcher',
      name: 'warnings',
      props: { target: ['hook', 'mail'], 'match-severity': ['warning,error'] },
      priv: {},
    });
    m.set('store1-only', {
      type: 'matcher',
      name: 'store1-only',
      props: { target: ['tmpl'], 'match-field': ['exact:datastore=store1', 'exact:event=mode-set'] },
      priv: {},
    });
  });
  const log = new ArrayEventLog();
  log.append({ store: 'old', type: 'hold-engaged', severity: 'warning', source: 'system' }); // before start: not sent
  answers.push(500); // the first delivery fails
  const notifier = new Notifier({ configDir, events: log, pollMs: 50, backoffMs: 200 });
  notifier.start();
  try {
    log.append({
      store: 'store1',
      type: 'mode-set',
      severity: 'notice',
      source: 'operator',
      authId: 'root@pam',
      from: '',
      to: 'type=read-only,message=disk swap',
      message: 'disk swap',
    });
    log.append({
      store: 'store2',
      type: 'hold-engaged',
      severity: 'warning',
      source: 'system',
      to: 'sealed: low space: 4% free',
      message: 'low space: 4% free',
      detail: { hold: 'low-space' },
    });
    const tmpl = await until('the template webhook', () => received.find((r) => r.url.startsWith('/tmpl')));
    assert.equal(tmpl.method, 'PUT');
    assert.equal(tmpl.url, '/tmpl?store=store1');
    assert.equal(tmpl.headers['x-sev'], 'notice');
    assert.deepEqual(JSON.parse(tmpl.body), {
      text: "Datastore 'store1': maintenance mode set to type=read-only,message=disk swap",
      ds: 'store1',
      k: 'abc',
    });
    const jsons = await until('the retried JSON webhook', () => {
      const r = received.filter((x) => x.url === '/json');
      return r.length >= 2 ? r : undefined;
    });
    assert.equal(jsons.length, 2, 'one failed attempt, one retry');
    const hook = jsons[1]!;
    const ts = hook.headers[TIMESTAMP_HEADER.toLowerCase()] as string;
    assert.match(ts, /^\d+$/);
    assert.equal(hook.headers[SIGNATURE_HEADER.toLowerCase()], webhookSignature('s3cret', ts, hook.body));
    assert.equal(hook.headers['content-type'], 'application/json');
    const doc = JSON.parse(hook.body) as Record<string, unknown>;
    assert.equal(doc.event, 'hold-engaged');
    assert.equal(doc.datastore, 'store2');
    assert.equal(doc.severity, 'warning');
    assert.equal(doc.mode, 'sealed: low space: 4% free');
    assert.equal(doc.message, 'low space: 4% free');
    assert.deepEqual(doc.detail, { hold: 'low-space' });
    assert.match(doc.time as string, /^\d{4}-\d\d-\d\dT/);
    const mail = await until('the mail', () => mails[0]);
    assert.match(mail, /Subject: Datastore 'store2': system hold engaged/);
    assert.match(mail, /To: ops@example\.org/);
    assert.match(mail, /low space: 4% free/);
    // nothing for the event before start, nothing unmatched (store1's mode-set is a notice)
    assert.equal(received.filter((r) => r.body.includes('"old"')).length, 0);
    assert.equal(mails.length, 1);
  } finally {
    await notifier.close();
  }
});

test('matchers follow proxmox-notify: all/any of the rules, invert-match, disable, no rules matches all', async () => {
  const { matcherMatches, toNotification } = await import('../../src/notifications/notifier.js');
  const n = toNotification({
    id: 1,
    time: Date.now(),
    store: 'store1',
    type: 'job-failed',
    severity: 'error',
    source: 'job',
    detail: { job: { type: 'gc', id: 'x' }, error: 'boom' },
  });
  const m = (props: Record<string, string | string[] | boolean>) =>
    matcherMatches({ type: 'matcher', name: 'm', props, priv: {} }, n);
  assert.equal(m({}), true);
  assert.equal(m({ 'match-field': ['exact:type=gc'] }), true, "PBS's type field is the job type");
  assert.equal(m({ 'match-field': ['exact:type=gc', 'exact:datastore=other'] }), false);
  assert.equal(m({ 'match-field': ['exact:type=gc', 'exact:datastore=other'], mode: 'any' }), true);
  assert.equal(m({ 'match-severity': ['info,notice'] }), false);
  assert.equal(m({ 'match-severity': ['info,notice'], 'invert-match': true }), true);
  assert.equal(m({ 'match-field': ['regex:datastore=^store\\d$'] }), true);
  assert.equal(m({ disable: true }), false);
});
