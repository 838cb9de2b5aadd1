/**
 * Every POST and PUT route whose parameters are all optional answers a request with no body
 * and no content type (as python3-proxmoxer and curl send it), and one with an empty JSON body,
 * without a 400: PBS reads both as "no parameters" (proxmox-rest-server `get_request_parameters`).
 * The routes are walked from the route table, so a new route is covered by this test the day it
 * is added; a route with a URL parameter this test cannot fill fails it loudly.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { request as httpsRequest } from 'node:https';
import { apiRoutes } from '../../src/api2/index.js';
import type { AnyRoute } from '../../src/http/route.js';
import { startTestServer, type TestServer } from '../helpers/https-api.js';

let t: TestServer;
const STORE = 'store1';

before(async () => {
  t = await startTestServer({ prefix: 'stowage-e2e-empty-' });
  await t.addBareDatastore(STORE);
  await t.addUser('alice@pbs');
  for (const kind of ['prune', 'verify']) {
    const res = await t.api('POST', `/config/${kind}`, {
      auth: t.root,
      body: { id: `${kind}1`, store: STORE, schedule: 'daily' },
    });
    assert.equal(res.status, 200, JSON.stringify(res.body));
  }
});

after(async () => {
  await t?.close();
});

/** A real object for each URL parameter a route may have. */
const URL_VALUES: Record<string, () => string> = {
  store: () => STORE,
  name: () => STORE,
  userid: () => 'alice@pbs',
  tokenname: (() => {
    let n = 0;
    return () => `tok${++n}`; // POST creates a token: a fresh name per request
  })(),
  id: () => 'UNSET', // set per route below (prune1 or verify1)
  node: () => 'localhost',
};

function requiredOf(schema: unknown): string[] {
  return ((schema as { required?: string[] } | undefined)?.required ?? []).slice();
}

function fillPath(route: AnyRoute): string {
  return route.path.replace(/:([A-Za-z0-9_-]+)/g, (_, name: string) => {
    if (name === 'id') return route.path.includes('/prune/') ? 'prune1' : 'verify1';
    const value = URL_VALUES[name];
    assert.ok(value, `${route.method} ${route.path}: no test value for URL parameter '${name}'`);
    return encodeURIComponent(value());
  });
}

/** A request with exactly these headers and body (none when `body` is undefined). */
function send(
  method: string,
  path: string,
  headers: Record<string, string>,
  body?: string,
): Promise<{ status: number; text: string }> {
  const auth = t.root;
  return new Promise((resolve, reject) => {
    const req = httpsRequest(
      new URL(`/api2/json${path}`, t.server.url),
      {
        method,
        rejectUnauthorized: false,
        agent: false, // no shared TLS session cache: the helper's fingerprint check needs a full handshake
        headers: {
          cookie: `PBSAuthCookie=${encodeURIComponent(auth.ticket!)}`,
          CSRFPreventionToken: auth.csrf!,
          ...headers,
          ...(body !== undefined && { 'content-length': String(Buffer.byteLength(body)) }),
        },
      },
      (res) => {
        const parts: Buffer[] = [];
        res.on('data', (d: Buffer) => parts.push(d));
        res.on('end', () => resolve({ status: res.statusCode!, text: Buffer.concat(parts).toString() }));
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

/**
 * A 400 that is about the request, not about the walk's datastore: `mount` and `unmount` answer
 * a store that is not removable, `s3-refresh` one that is not on S3, with PBS's 400 whatever the
 * body.
 */
const refusedForBody = (res: { status: number; text: string }) =>
  res.status === 400 && !/is not removable|not backed by S3/.test(res.text);

const optionalOnly = apiRoutes.filter(
  (r) =>
    (r.method === 'POST' || r.method === 'PUT') &&
    requiredOf(r.body).length === 0 &&
    requiredOf(r.query).length === 0 &&
    r.path !== '/access/ticket',
);

test('the walk covers the routes it should', () => {
  const names = optionalOnly.map((r) => `${r.method} ${r.path}`);
  for (const expected of [
    'POST /access/users/:userid/token/:tokenname',
    'PUT /config/datastore/:name',
    'POST /admin/datastore/:store/gc',
    'POST /admin/datastore/:store/verify',
  ]) {
    assert.ok(names.includes(expected), `${expected} is walked`);
  }
});

test('every POST/PUT route whose parameters are all optional accepts no body at all', async () => {
  const refused: string[] = [];
  for (const route of optionalOnly) {
    const res = await send(route.method, fillPath(route), {});
    if (refusedForBody(res)) refused.push(`${route.method} ${route.path}: ${res.text}`);
  }
  assert.deepEqual(refused, []);
});

test('every POST/PUT route whose parameters are all optional accepts an empty JSON body', async () => {
  const refused: string[] = [];
  for (const route of optionalOnly) {
    const res = await send(route.method, fillPath(route), { 'content-type': 'application/json' }, '');
    if (refusedForBody(res)) refused.push(`${route.method} ${route.path}: ${res.text}`);
  }
  assert.deepEqual(refused, []);
});

test('a body of another content type is a 400 naming it, not a 415', async () => {
  const res = await send('PUT', `/config/datastore/${STORE}`, { 'content-type': 'text/plain' }, 'comment=x');
  assert.equal(res.status, 400);
  assert.match(res.text, /unsupported content type \\?"text\/plain\\?"/);
});

test('parameters of a POST may come in the query string as well as in a form body', async () => {
  const res = await send(
    'POST',
    '/access/users/alice@pbs/token/fromquery?comment=from%20query',
    { 'content-type': 'application/x-www-form-urlencoded' },
    'expire=0',
  );
  assert.equal(res.status, 200, res.text);
  const read = await t.api('GET', '/access/users/alice@pbs/token/fromquery', { auth: t.root });
  assert.equal((read.body.data as { comment?: string }).comment, 'from query');
});
