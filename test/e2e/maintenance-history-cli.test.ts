/**
 * `stowage datastore maintenance history NAME` against a server over HTTPS: a table of the mode
 * changes newest first (UTC time, event, from → to, who, message, drain duration), JSON for
 * scripts, and a one-line error with a non-zero exit for bad input.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import type { MaintenanceHistoryItem } from '../../src/api-types/maintenance-history.js';
import { STOWAGE_BIN, runCli } from '../helpers/cli.js';
import { startTestServer, type TestServer } from '../helpers/https-api.js';

let t: TestServer;
let env: NodeJS.ProcessEnv;
const stowage = (...args: string[]) => runCli(STOWAGE_BIN, args, env);

before(async () => {
  t = await startTestServer({ prefix: 'stowage-history-cli-' });
  await t.addBareDatastore('store1');
  env = {
    STOWAGE_CONFIG_DIR: t.paths.configDir,
    STOWAGE_DATA_DIR: t.paths.dataDir,
    STOWAGE_RUN_DIR: t.paths.runDir,
    STOWAGE_SERVER: new URL(t.server.url).host,
  };
  const put = (body: Record<string, unknown>) =>
    t.api('PUT', '/config/datastore/store1', { auth: t.root, body });
  assert.equal((await put({ 'maintenance-mode': 'read-only,message="disk swap"' })).status, 200);
  const drained = await t.api('POST', '/admin/datastore/store1/wait-drained', { auth: t.root });
  assert.equal(drained.status, 200);
  assert.equal((await put({ delete: 'maintenance-mode' })).status, 200);
});
after(() => t.close());

test('history prints the changes newest first with who, from → to, message and the drain', async () => {
  const r = await stowage('datastore', 'maintenance', 'history', 'store1');
  assert.equal(r.code, 0, r.stderr);
  const lines = r.stdout.trimEnd().split('\n');
  assert.match(lines[0]!, /^time\s+event\s+from → to\s+by\s+message\s+drain$/);
  const time = String.raw`\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ`;
  assert.match(
    lines[1]!,
    new RegExp(`^${time}\\s+mode-cleared\\s+read-only → none\\s+root@pam\\s+disk swap$`),
  );
  assert.match(
    lines[2]!,
    new RegExp(`^${time}\\s+drained\\s+none → read-only\\s+operator\\s+disk swap\\s+\\d+\\.\\d\\d s$`),
  );
  assert.match(lines[3]!, new RegExp(`^${time}\\s+mode-set\\s+none → read-only\\s+root@pam\\s+disk swap$`));
  assert.equal(lines.length, 4);

  const one = await stowage('datastore', 'maintenance', 'history', 'store1', '--limit', '1');
  assert.equal(one.code, 0, one.stderr);
  assert.equal(one.stdout.trimEnd().split('\n').length, 2);

  const json = await stowage('--output-format', 'json', 'datastore', 'maintenance', 'history', 'store1');
  assert.equal(json.code, 0, json.stderr);
  const items = JSON.parse(json.stdout) as MaintenanceHistoryItem[];
  assert.deepEqual(
    items.map((e) => e.type),
    ['mode-cleared', 'drained', 'mode-set'],
  );
  assert.equal(typeof items[1]!.duration, 'number');
});

test('bad input gets a one-line error and a non-zero exit', async () => {
  for (const limit of ['0', '1001', 'many']) {
    const r = await stowage('datastore', 'maintenance', 'history', 'store1', '--limit', limit);
    assert.equal(r.code, 2, r.stderr);
    assert.equal(r.stderr, `error: invalid --limit '${limit}': expected a whole number from 1 to 1000\n`);
    assert.equal(r.stdout, '');
  }
  const unknown = await stowage('datastore', 'maintenance', 'history', 'nosuch');
  assert.equal(unknown.code, 4, unknown.stderr);
  assert.match(unknown.stderr, /^error: .*nosuch.*\n$/);
});
