/**
 * Path parameters as a hostile client sends them, byte for byte (no URL normalisation on the
 * way): decoded `..` and `/`, overlong components. Each is a 4xx in the PBS envelope that names
 * what was wrong — never a 403 about an ACL path that cannot exist, never fastify's own body.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { request as httpsRequest } from 'node:https';
import { startTestServer, type TestServer } from '../helpers/https-api.js';

let srv: TestServer;

before(async () => {
  srv = await startTestServer({ prefix: 'stowage-e2e-urlparams-' });
});

after(async () => {
  await srv?.close();
});

/** GET `rawPath` exactly as written, as root. */
function rawGet(rawPath: string): Promise<{ status: number; reason: string; body: Record<string, unknown> }> {
  const url = new URL(srv.server.url);
  return new Promise((resolve, reject) => {
    const req = httpsRequest(
      {
        host: url.hostname,
        port: url.port,
        path: rawPath,
        method: 'GET',
        rejectUnauthorized: false,
        headers: { cookie: `PBSAuthCookie=${encodeURIComponent(srv.root.ticket!)}` },
      },
      (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (d: string) => (text += d));
        res.on('end', () =>
          resolve({ status: res.statusCode!, reason: res.statusMessage ?? '', body: JSON.parse(text) }),
        );
      },
    );
    req.on('error', reject);
    req.end();
  });
}

test('a decoded ".." or "/" in a datastore name is a 400 naming the parameter, for root too', async () => {
  for (const [path, param] of [
    ['/api2/json/config/datastore/%2e%2e', 'name'],
    ['/api2/json/config/datastore/a%2Fb', 'name'],
    ['/api2/json/admin/datastore/%2e%2e/status', 'store'],
    ['/api2/json/admin/datastore/x%2F..%2Fy/groups', 'store'],
  ] as const) {
    const res = await rawGet(path);
    assert.equal(res.status, 400, `${path}: ${JSON.stringify(res.body)}`);
    assert.equal(res.body.data, null);
    assert.match(
      res.body.message as string,
      new RegExp(`^parameter verification failed - '${param}': `),
      path,
    );
    assert.ok((res.body.errors as Record<string, string>)[param], path);
  }
});

test('an overlong path component is a 414 in the PBS envelope with the reason as status text', async () => {
  const res = await rawGet(`/api2/json/admin/datastore/${'x'.repeat(3000)}/status`);
  assert.equal(res.status, 414);
  assert.deepEqual(res.body, {
    data: null,
    message: 'URI too long: a path component is longer than 1024 characters',
  });
  assert.equal(res.reason, 'URI too long: a path component is longer than 1024 characters');
});
