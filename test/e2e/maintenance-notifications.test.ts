/**
 * Maintenance notifications end to end (issue 13): endpoints and matchers configured over the
 * HTTPS API, a mode set and cleared through it, and what a local HTTP listener and a local SMTP
 * server (started here) receive — the JSON document of each event, signed, and a mail naming the
 * datastore, the mode and its message — matching the history API. A webhook answering 500 first
 * is tried again.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import type { MaintenanceHistoryItem } from '../../src/api-types/maintenance-history.js';
import { startTestServer, type TestServer } from '../helpers/https-api.js';
import {
  assertSignedWith,
  startSmtpListener,
  startWebhookListener,
  until,
  type SmtpListener,
  type WebhookListener,
} from '../helpers/notification-listeners.js';

/** The JSON document a webhook without a body template gets. */
interface EventDocument {
  id: number;
  event: string;
  datastore: string;
  mode: string | null;
  from: string | null;
  message: string | null;
  time: string;
  timestamp: number;
  authid?: string;
}

let t: TestServer;
let hooks: WebhookListener;
let smtp: SmtpListener;
const KEY = 'maintenance-signing-key';
const b64 = (s: string) => Buffer.from(s).toString('base64');

before(async () => {
  hooks = await startWebhookListener();
  smtp = await startSmtpListener();
  t = await startTestServer({
    prefix: 'stowage-notify-maint-',
    notifier: { pollMs: 100, backoffMs: 200, maxAttempts: 3 },
  });
  for (const store of ['store1', 'store2', 'store3']) await t.addBareDatastore(store);
});
after(async () => {
  await t.close();
  await hooks.close();
  await smtp.close();
});

async function create(path: string, body: Record<string, unknown>): Promise<void> {
  const res = await t.api('POST', `/config/notifications/${path}`, { auth: t.root, body });
  assert.equal(res.status, 200, JSON.stringify(res.body));
}

async function setMode(store: string, body: Record<string, unknown>): Promise<void> {
  const res = await t.api('PUT', `/config/datastore/${store}`, { auth: t.root, body });
  assert.equal(res.status, 200, JSON.stringify(res.body));
}

/** The documents received at `path` so far, each checked for a valid signature. */
function documents(path: string): EventDocument[] {
  return hooks.received
    .filter((r) => r.url === path)
    .map((r) => {
      assertSignedWith(KEY, r);
      assert.equal(r.headers['content-type'], 'application/json');
      return JSON.parse(r.body) as EventDocument;
    });
}

const ofType = (path: string, event: string) => () => documents(path).find((d) => d.event === event);

test('a signed webhook receives mode set, drained and cleared as JSON documents, as the history shows them', async () => {
  await create('endpoints/webhook', {
    name: 'ops',
    url: `${hooks.url}/hook`,
    method: 'post',
    secret: [`name=signing,value=${b64(KEY)}`],
  });
  await create('matchers', {
    name: 'store1-all',
    target: ['ops'],
    'match-field': ['exact:datastore=store1'],
  });

  const start = Date.now();
  await setMode('store1', { 'maintenance-mode': 'read-only,message="disk swap"' });
  const set = await until('mode-set', ofType('/hook', 'mode-set'));
  // nobody waits for the drain: the server's drain monitor records it, and the notifier sends it
  const drained = await until('drained', ofType('/hook', 'drained'));
  await setMode('store1', { delete: 'maintenance-mode' });
  const cleared = await until('mode-cleared', ofType('/hook', 'mode-cleared'));

  for (const d of [set, drained, cleared]) {
    assert.equal(d.datastore, 'store1');
    assert.equal(d.message, 'disk swap');
    const time = Date.parse(d.time);
    assert.ok(time >= start - 1000 && time <= Date.now(), d.time);
    assert.equal(d.timestamp, Math.floor(time / 1000));
  }
  assert.equal(set.mode, 'read-only');
  assert.equal(set.from, 'none');
  assert.equal(set.authid, 'root@pam');
  assert.equal(drained.mode, 'read-only');
  assert.equal(cleared.mode, 'none');
  assert.equal(cleared.from, 'read-only');
  assert.equal(documents('/hook').length, 3, 'one delivery per event');

  const history = await t.api('GET', '/admin/datastore/store1/maintenance-history', { auth: t.root });
  assert.equal(history.status, 200);
  const items = history.body.data as MaintenanceHistoryItem[];
  assert.deepEqual(
    items.map((e) => [e.id, e.type, e.to, e.message]),
    [cleared, drained, set].map((d) => [d.id, d.event, d.mode, d.message]),
  );
  assert.equal(items[0]!.time, cleared.timestamp);
});

test('an SMTP endpoint smtp.mails a mode change naming the datastore, the mode and the message', async () => {
  await create('endpoints/smtp', {
    name: 'mail',
    server: '127.0.0.1',
    port: smtp.port,
    mode: 'insecure',
    'from-address': 'stowage@example.org',
    mailto: ['ops@example.org'],
  });
  await create('matchers', {
    name: 'store2-changes',
    target: ['mail'],
    'match-field': ['exact:datastore=store2', 'exact:event=mode-set'],
  });
  await setMode('store2', { 'maintenance-mode': 'offline,message="array rebuild"' });
  const mail = await until('the mail', () => smtp.mails.find((m) => m.includes('store2')));
  assert.match(mail, /^Subject: Datastore 'store2': maintenance mode set to offline\r?$/m);
  assert.match(mail, /^To: ops@example\.org\r?$/m);
  assert.match(mail, /^message: array rebuild\r?$/m);
  assert.match(mail, /^by: root@pam\r?$/m);
  await setMode('store2', { delete: 'maintenance-mode' });

  const history = await t.api('GET', '/admin/datastore/store2/maintenance-history?limit=1', {
    auth: t.root,
  });
  const [latest] = history.body.data as MaintenanceHistoryItem[];
  assert.equal(latest!.type, 'mode-cleared');
  // five poll intervals: a mail for the clear would have been sent by now
  await new Promise((r) => setTimeout(r, 500));
  assert.equal(smtp.mails.filter((m) => m.includes('store2')).length, 1, 'only mode-set matches');
});

test('a webhook answering 500 gets the same event again after a backoff', async () => {
  hooks.answers.set('/flaky', [500]);
  await create('endpoints/webhook', {
    name: 'flaky',
    url: `${hooks.url}/flaky`,
    method: 'post',
    secret: [`name=signing,value=${b64(KEY)}`],
  });
  await create('matchers', {
    name: 'store3-set',
    target: ['flaky'],
    'match-field': ['exact:datastore=store3', 'exact:event=mode-set'],
  });
  await setMode('store3', { 'maintenance-mode': 'read-only,message=retry' });
  const [first, second] = await until('a retry', () => {
    const docs = documents('/flaky');
    return docs.length >= 2 ? docs : undefined;
  });
  assert.deepEqual(second, first);
  assert.equal(first!.event, 'mode-set');
  await setMode('store3', { delete: 'maintenance-mode' });
});
