/**
 * `/metrics` scraped over HTTPS as Prometheus does (an API token in `Authorization`), while the
 * maintenance mode changes and an operation runs in another process.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { request as httpsRequest } from 'node:https';
import { startTestServer, type TestServer } from '../helpers/https-api.js';
import { HolderProcess } from '../helpers/holder-process.js';

let t: TestServer;
let token: string;

before(async () => {
  t = await startTestServer({ prefix: 'stowage-metrics-' });
  await t.addBareDatastore('store1');
  await t.addBareDatastore('idle1');
  await t.addUser('prom@pbs', [{ path: '/system/status', role: 'Audit' }]);
  const created = await t.api('POST', '/access/users/prom@pbs/token/scrape', { auth: t.root });
  assert.equal(created.status, 200, JSON.stringify(created.body));
  const data = created.body.data as { tokenid: string; value: string };
  token = `${data.tokenid}:${data.value}`;
  // tokens have their own ACL entries (PBS's privilege separation)
  const acl = { path: '/system/status', role: 'Audit', 'auth-id': data.tokenid };
  assert.equal((await t.api('PUT', '/access/acl', { auth: t.root, body: acl })).status, 200);
});
after(() => t.close());

function scrape(authorization?: string): Promise<{ status: number; type: string; text: string }> {
  return new Promise((resolve, reject) => {
    const req = httpsRequest(
      new URL('/metrics', t.server.url),
      { rejectUnauthorized: false, headers: authorization ? { authorization } : {} },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () =>
          resolve({
            status: res.statusCode!,
            type: String(res.headers['content-type']),
            text: Buffer.concat(chunks).toString(),
          }),
        );
      },
    );
    req.on('error', reject);
    req.end();
  });
}

/** The value of one sample, e.g. `stowage_datastore_maintenance_mode{store="store1",type="none"}`. */
function sample(text: string, name: string, labels: Record<string, string>): number | undefined {
  const want = Object.entries(labels).map(([k, v]) => `${k}="${v}"`);
  for (const line of text.split('\n')) {
    const m = /^([a-z_]+)\{([^}]*)\} (\S+)$/.exec(line);
    if (!m || m[1] !== name) continue;
    const have = m[2]!.split(',');
    if (want.every((w) => have.includes(w))) return Number(m[3]);
  }
  return undefined;
}

test('/metrics needs authentication and Sys.Audit on /system/status', async () => {
  assert.equal((await scrape()).status, 401);
  const nobody = await t.addUser('nobody@pbs');
  void nobody;
  const tok = await t.api('POST', '/access/users/nobody@pbs/token/x', { auth: t.root });
  const d = tok.body.data as { tokenid: string; value: string };
  const denied = await scrape(`PBSAPIToken ${d.tokenid}:${d.value}`);
  assert.equal(denied.status, 403);
  assert.match(JSON.parse(denied.text).message as string, /Sys\.Audit/);
});

test('the mode gauge follows the maintenance mode and active operations count a running one', async () => {
  const first = await scrape(`PBSAPIToken ${token}`);
  assert.equal(first.status, 200, first.text);
  assert.match(first.type, /^text\/plain/);
  const mode = (text: string, type: string) =>
    sample(text, 'stowage_datastore_maintenance_mode', { store: 'store1', type });
  assert.equal(mode(first.text, 'none'), 1);
  assert.equal(mode(first.text, 'read-only'), 0);
  assert.equal(
    sample(first.text, 'stowage_datastore_active_operations', { store: 'store1', class: 'read' }),
    0,
  );

  const set = await t.api('PUT', '/config/datastore/store1', {
    auth: t.root,
    body: { 'maintenance-mode': 'read-only,message=swap' },
  });
  assert.equal(set.status, 200, JSON.stringify(set.body));
  const holder = await new HolderProcess(t.paths).start();
  try {
    await holder.hold('store1', 'read', 'reader');
    const during = (await scrape(`PBSAPIToken=${token}`)).text;
    assert.equal(mode(during, 'read-only'), 1);
    assert.equal(mode(during, 'none'), 0);
    assert.equal(
      sample(during, 'stowage_datastore_active_operations', { store: 'store1', class: 'read' }),
      1,
    );
  } finally {
    await holder.stop();
  }
  const cleared = await t.api('PUT', '/config/datastore/store1', {
    auth: t.root,
    body: { delete: 'maintenance-mode' },
  });
  assert.equal(cleared.status, 200, JSON.stringify(cleared.body));
  const last = (await scrape(`PBSAPIToken ${token}`)).text;
  assert.equal(mode(last, 'none'), 1);
  assert.equal(sample(last, 'stowage_datastore_active_operations', { store: 'store1', class: 'read' }), 0);
});

test('the last drain appears once a mode set on an idle store has drained, and a system hold shows', async () => {
  const drain = (text: string) => sample(text, 'stowage_datastore_last_drain_seconds', { store: 'idle1' });
  assert.equal(drain((await scrape(`PBSAPIToken ${token}`)).text), undefined);
  const set = await t.api('PUT', '/config/datastore/idle1', {
    auth: t.root,
    body: { 'maintenance-mode': 'read-only,message=swap' },
  });
  assert.equal(set.status, 200, JSON.stringify(set.body));
  // nobody waits: the server's drain monitor records the drain within a few seconds
  let seconds: number | undefined;
  for (const end = Date.now() + 10_000; seconds === undefined && Date.now() < end;) {
    seconds = drain((await scrape(`PBSAPIToken ${token}`)).text);
    if (seconds === undefined) await new Promise((r) => setTimeout(r, 200));
  }
  assert.ok(seconds !== undefined && seconds >= 0 && seconds < 10, `last drain: ${seconds}`);

  // a system hold put by another process of the instance (as the low-space check does)
  const holder = await new HolderProcess(t.paths).start();
  const hold = (h: { type: string; message: string } | null) =>
    holder.send({ cmd: 'set-hold', store: 'idle1', source: 'low-space', hold: h });
  try {
    assert.equal((await hold({ type: 'sealed', message: 'low space: 3% free' })).ok, true);
    const held = (await scrape(`PBSAPIToken ${token}`)).text;
    assert.equal(
      sample(held, 'stowage_datastore_system_hold', { store: 'idle1', source: 'low-space', type: 'sealed' }),
      1,
    );
    await hold(null);
    const lifted = (await scrape(`PBSAPIToken ${token}`)).text;
    assert.equal(sample(lifted, 'stowage_datastore_system_hold', { store: 'idle1' }), undefined);
  } finally {
    await holder.stop();
  }
});
