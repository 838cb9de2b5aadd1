/**
 * A maintenance-mode in datastore.cfg that cannot be parsed (a hand edit gone wrong) makes the
 * datastore unavailable like any maintenance refusal — 503 with a message saying what is wrong,
 * code MAINTENANCE (CLI exit 75) — not a 500 server error; and setting or clearing the mode
 * through the API repairs it.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { appendFileSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { startTestServer, type TestServer } from '../helpers/https-api.js';

let srv: TestServer;

before(async () => {
  srv = await startTestServer({ prefix: 'stowage-e2e-badmode-' });
  await srv.addBareDatastore('store1');
  // the hand edit: a mode type nobody knows
  appendFileSync(join(srv.dir, 'etc', 'datastore.cfg'), '\tmaintenance-mode frozen,message="x"\n');
});

after(async () => {
  await srv?.close();
});

test('an unreadable stored mode refuses with 503 MAINTENANCE naming the problem, and clearing it repairs the store', async () => {
  assert.match(readFileSync(join(srv.dir, 'etc', 'datastore.cfg'), 'utf8'), /maintenance-mode frozen/);
  const refused = await srv.api('GET', '/admin/datastore/store1/status', { auth: srv.root });
  assert.equal(refused.status, 503, JSON.stringify(refused.body));
  assert.equal(refused.body.code, 'MAINTENANCE');
  assert.match(
    refused.body.message!,
    /^datastore 'store1' is unavailable: its maintenance-mode in datastore\.cfg cannot be read \(.*frozen.*\); refusing all operations until an administrator sets or clears the mode$/,
  );
  const cleared = await srv.api('PUT', '/config/datastore/store1', {
    auth: srv.root,
    body: { delete: ['maintenance-mode'] },
  });
  assert.equal(cleared.status, 200, JSON.stringify(cleared.body));
  const ok = await srv.api('GET', '/admin/datastore/store1/status', { auth: srv.root });
  assert.equal(ok.status, 200, JSON.stringify(ok.body));
});
