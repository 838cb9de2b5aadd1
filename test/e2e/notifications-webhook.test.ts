/**
 * A webhook configured through the API over HTTPS: PBS's test call reaches it at once, signed.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { startTestServer, type TestServer } from '../helpers/https-api.js';
import {
  assertSignedWith,
  startWebhookListener,
  type WebhookListener,
} from '../helpers/notification-listeners.js';

let t: TestServer;
let listener: WebhookListener;
let base: string;
const KEY = 'webhook-signing-key';
const b64 = (s: string) => Buffer.from(s).toString('base64');

before(async () => {
  listener = await startWebhookListener();
  base = listener.url;
  t = await startTestServer({ prefix: 'stowage-notify-hook-' });
  await t.addBareDatastore('store1');
  await t.addBareDatastore('store2');
});
after(async () => {
  await t.close();
  await listener.close();
});

test('the test call delivers at once and reports an unreachable endpoint', async () => {
  const hook = await t.api('POST', '/config/notifications/endpoints/webhook', {
    auth: t.root,
    body: { name: 'ops-test', url: `${base}/test`, method: 'post', secret: [`name=k,value=${b64(KEY)}`] },
  });
  assert.equal(hook.status, 200, JSON.stringify(hook.body));
  const before = listener.received.length;
  const ok = await t.api('POST', '/config/notifications/targets/ops-test/test', { auth: t.root });
  assert.equal(ok.status, 200, JSON.stringify(ok.body));
  const r = listener.received[before]!;
  assertSignedWith(KEY, r);
  assert.equal((JSON.parse(r.body) as { title: string }).title, 'Test notification');

  const dead = await t.api('POST', '/config/notifications/endpoints/webhook', {
    auth: t.root,
    body: { name: 'dead', url: 'http://127.0.0.1:1/x', method: 'post' },
  });
  assert.equal(dead.status, 200);
  const failed = await t.api('POST', '/config/notifications/targets/dead/test', { auth: t.root });
  assert.equal(failed.status, 400);
  assert.match(failed.body.message as string, /could not notify via target\(s\): dead/);
  const missing = await t.api('POST', '/config/notifications/targets/none/test', { auth: t.root });
  assert.equal(missing.status, 404);
});
