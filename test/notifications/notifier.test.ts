/**
 * The notifier against real listeners: an HTTP server and an SMTP server (smtp-server) started
 * here, fed from an event log it tails as the server's notifier does.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { notificationConfig } from '../../src/notifications/notification-config.js';
import {
  Notifier,
  SIGNATURE_HEADER,
  TIMESTAMP_HEADER,
  webhookSignature,
  type NotifiableEvent,
} from '../../src/notifications/notifier.js';
import {
  startSmtpListener,
  startWebhookListener,
  until,
  type SmtpListener,
  type WebhookListener,
} from '../helpers/notification-listeners.js';

let dir: string;
let http: WebhookListener;
let smtp: SmtpListener;

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
  http = await startWebhookListener();
  smtp = await startSmtpListener();
});
after(async () => {
  await http.close();
  await smtp.close();
  rmSync(dir, { recursive: true, force: true });
});

const b64 = (s: string) => Buffer.from(s).toString('base64');

test('matching events reach webhooks (JSON or template, signed) and SMTP; a 500 is retried with backoff', async () => {
  const configDir = join(dir, 'etc');
  await notificationConfig(configDir).update((m) => {
    m.set('hook', {
      type: 'webhook',
      name: 'hook',
      props: { url: `${http.url}/json`, method: 'post' },
      priv: { secret: [`name=signing,value=${b64('s3cret')}`] },
    });
    m.set('tmpl', {
      type: 'webhook',
      name: 'tmpl',
      props: {
        url: `${http.url}/tmpl?store={{ url-encode fields.datastore }}`,
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
        port: smtp.port,
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
  http.answers.set('/json', [500]); // the first delivery fails
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
    const tmpl = await until('the template webhook', () =>
      http.received.find((r) => r.url.startsWith('/tmpl')),
    );
    assert.equal(tmpl.method, 'PUT');
    assert.equal(tmpl.url, '/tmpl?store=store1');
    assert.equal(tmpl.headers['x-sev'], 'notice');
    assert.deepEqual(JSON.parse(tmpl.body), {
      text: "Datastore 'store1': maintenance mode set to type=read-only,message=disk swap",
      ds: 'store1',
      k: 'abc',
    });
    const jsons = await until('the retried JSON webhook', () => {
      const r = http.received.filter((x) => x.url === '/json');
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
    const mail = await until('the mail', () => smtp.mails[0]);
    assert.match(mail, /Subject: Datastore 'store2': system hold engaged/);
    assert.match(mail, /To: ops@example\.org/);
    assert.match(mail, /low space: 4% free/);
    // nothing for the event before start, nothing unmatched (store1's mode-set is a notice)
    assert.equal(http.received.filter((r) => r.body.includes('"old"')).length, 0);
    assert.equal(smtp.mails.length, 1);
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
