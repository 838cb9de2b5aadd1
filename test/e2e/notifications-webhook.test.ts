/**
 * A webhook configured through the API over HTTPS: PBS's test call reaches it at once, signed.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createHmac } from 'node:crypto';
import { startTestServer, type TestServer } from '../helpers/https-api.js';

interface Received {
  url: string;
  headers: IncomingMessage['headers'];
  body: string;
}

let t: TestServer;
let listener: Server;
let base: string;
const received: Received[] = [];
const KEY = 'webhook-signing-key';
const b64 = (s: string) => Buffer.from(s).toString('base64');

before(async () => {
  listener = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      received.push({ url: req.url!, headers: req.headers, body: Buffer.concat(chunks).toString() });
      res.end();
    });
  });
  await new Promise<void>((r) => listener.listen(0, '127.0.0.1', r));
  base = `http://127.0.0.1:${(listener.address() as AddressInfo).port}`;
  t = await startTestServer({ prefix: 'stowage-notify-hook-' });
  await t.addBareDatastore('store1');
  await t.addBareDatastore('store2');
});
after(async () => {
  await t.close();
  listener.close();
});

function checkSignature(r: Received): void {
  const ts = r.headers['x-stowage-timestamp'] as string;
  assert.match(ts, /^\d+$/);
  assert.ok(Math.abs(Date.now() / 1000 - Number(ts)) < 60);
  const expected = `sha256=${createHmac('sha256', KEY).update(`${ts}.${r.body}`).digest('hex')}`;
  assert.equal(r.headers['x-stowage-signature'], expected);
}

test('the test call delivers at once and reports an unreachable endpoint', async () => {
  const hook = await t.api('POST', '/config/notifications/endpoints/webhook', {
    auth: t.root,
    body: { name: 'ops-test', url: `${base}/test`, method: 'post', secret: [`name=k,value=${b64(KEY)}`] },
  });
  assert.equal(hook.status, 200, JSON.stringify(hook.body));
  const before = received.length;
  const ok = await t.api('POST', '/config/notifications/targets/ops-test/test', { auth: t.root });
  assert.equal(ok.status, 200, JSON.stringify(ok.body));
  const r = received[before]!;
  checkSignature(r);
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
