import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { hostname, release } from 'node:os';
import { Compile } from 'typebox/compile';
import { NodeStatusSchema } from '../../src/api2/nodes/status.js';
import { startTestServer, type TestServer } from '../helpers/https-api.js';

let t: TestServer;

before(async () => {
  t = await startTestServer({ prefix: 'stowage-e2e-node-status-', nodeName: 'statusnode' });
});

after(async () => {
  await t?.close();
});

test("the node status has PBS's shape, with this host's figures and the served certificate's fingerprint", async () => {
  const res = await t.api('GET', '/nodes/localhost/status', { auth: t.root });
  assert.equal(res.status, 200, JSON.stringify(res.body));
  const data = res.body.data as Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any
  const check = Compile(NodeStatusSchema);
  assert.ok(check.Check(data), JSON.stringify([...check.Errors(data)]));
  assert.deepEqual(Object.keys(data).sort(), [
    'boot-info',
    'cpu',
    'cpuinfo',
    'current-kernel',
    'info',
    'kversion',
    'loadavg',
    'memory',
    'root',
    'swap',
    'uptime',
    'wait',
  ]);
  assert.equal(data.info.fingerprint, t.server.fingerprint);
  assert.equal(data['current-kernel'].release, release());
  assert.equal(data['current-kernel'].sysname, 'Linux');
  assert.equal(
    data.kversion,
    `${data['current-kernel'].sysname} ${data['current-kernel'].release} ${data['current-kernel'].version}`,
  );
  assert.ok(data.memory.total > 0 && data.memory.used > 0 && data.memory.used <= data.memory.total);
  assert.ok(data.root.total > 0 && data.root.avail <= data.root.total);
  assert.ok(data.uptime > 0);
  assert.ok(data.cpuinfo.cpus >= 1);
  assert.ok(data.cpu >= 0 && data.cpu <= 1);
  assert.ok(data.wait >= 0 && data.wait <= 1);
  assert.equal(data.loadavg.length, 3);
  assert.ok(data.loadavg.every((v: unknown) => typeof v === 'number'));
});

test("the node may be named 'localhost' or by this node's name; another name is a 400 naming node", async () => {
  const byName = await t.api('GET', '/nodes/statusnode/status', { auth: t.root });
  assert.equal(byName.status, 200);
  const other = await t.api(
    'GET',
    `/nodes/${hostname() === 'elsewhere' ? 'elsewhere2' : 'elsewhere'}/status`,
    {
      auth: t.root,
    },
  );
  assert.equal(other.status, 400);
  assert.match(other.body.message!, /'node'/);
  const malformed = await t.api('GET', '/nodes/bad_name!/status', { auth: t.root });
  assert.equal(malformed.status, 400);
});

test('the node status needs Sys.Audit on /system/status', async () => {
  const nobody = await t.addUser('nobody@pbs', [{ path: '/datastore', role: 'DatastoreAdmin' }]);
  const denied = await t.api('GET', '/nodes/localhost/status', { auth: nobody });
  assert.equal(denied.status, 403);
  assert.equal(denied.body.message, 'permission check failed - missing Sys.Audit on /system/status');

  const auditor = await t.addUser('auditor@pbs', [{ path: '/system/status', role: 'Audit' }]);
  assert.equal((await t.api('GET', '/nodes/localhost/status', { auth: auditor })).status, 200);
  assert.equal((await t.api('GET', '/nodes/localhost/status')).status, 401);
});

test('unknown query parameters are refused with a 400 naming them', async () => {
  const res = await t.api('GET', '/nodes/localhost/status?verbose=1', { auth: t.root });
  assert.equal(res.status, 400);
  assert.match(res.body.message!, /'verbose'/);
});
