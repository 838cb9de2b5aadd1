/**
 * Operator scripts written for PBS with python3-proxmoxer (Debian's 1.2.0, run by /usr/bin/python3)
 * work against Stowage unchanged: each test runs one scenario of fixtures/proxmoxer_script.py
 * against the in-process server and checks what the script printed, step by step. A refused call
 * must reach the script with Stowage's reason, not only "403 Forbidden: Forbidden".
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { startTestServer, type TestServer } from '../helpers/https-api.js';
import { writeSnapshots } from '../helpers/snapshot-fixture.js';

const PYTHON = '/usr/bin/python3'; // Debian's, with python3-proxmoxer; a pyenv python3 lacks it
const SCRIPT = fileURLToPath(new URL('./fixtures/proxmoxer_script.py', import.meta.url));
const STORE = 'store1';
const T1 = 1717236000; // 2024-06-01T10:00:00Z
const OPS = 'ops@pbs';
const NOBODY = 'nobody@pbs';

let t: TestServer;

before(async () => {
  t = await startTestServer({ prefix: 'stowage-e2e-proxmoxer-' });
  await t.addBareDatastore(STORE, { comment: 'primary' });
  await writeSnapshots(t.server.context.datastores, STORE, [{ type: 'vm', id: '100', time: T1 }]);
  await t.addUser(OPS, [{ path: `/datastore/${STORE}`, role: 'DatastoreAudit' }]);
  await t.addUser(NOBODY);
});

after(async () => {
  await t?.close();
});

interface Step {
  step: string;
  ok: boolean;
  data?: any; // eslint-disable-line @typescript-eslint/no-explicit-any
  status?: number | null;
  /** `str(exception)`: what the operator's script prints. */
  error?: string;
}

/** The password addUser gave `userid`. */
const passwordOf = (userid: string) => `pw-${userid.replace(/[^a-z0-9]/gi, '')}-1`;

/** Run one scenario as `user`; the steps it printed, by name. Fails on a Python traceback. */
function runScript(
  scenario: string,
  user = 'root@pam',
  password = t.rootPassword,
): Promise<Map<string, Step>> {
  const env = {
    PATH: '/usr/bin:/bin',
    PYTHONDONTWRITEBYTECODE: '1',
    STOWAGE_HOST: '127.0.0.1',
    STOWAGE_PORT: new URL(t.server.url).port,
    STOWAGE_USER: user,
    STOWAGE_PASSWORD: password,
    STOWAGE_STORE: STORE,
    STOWAGE_TOKEN_USER: OPS,
  };
  return new Promise((resolve, reject) => {
    execFile(PYTHON, [SCRIPT, scenario], { env, timeout: 60_000 }, (err, stdout, stderr) => {
      if (err) {
        reject(new Error(`${scenario}: ${err.message}\n${stdout}\n${stderr}`));
        return;
      }
      const steps = new Map<string, Step>();
      for (const line of stdout.split('\n').filter(Boolean)) {
        const s = JSON.parse(line) as Step;
        steps.set(s.step, s);
      }
      resolve(steps);
    });
  });
}

/** The data of a step that must have succeeded. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
function ok(steps: Map<string, Step>, name: string): any {
  const s = steps.get(name);
  assert.ok(s, `step ${name} did not run`);
  assert.ok(s.ok, `step ${name} failed: ${s.error}`);
  return s.data;
}

/** The error text of a step that must have been refused with `status`. */
function refused(steps: Map<string, Step>, name: string, status: number | null): string {
  const s = steps.get(name);
  assert.ok(s, `step ${name} did not run`);
  assert.equal(s.ok, false, `step ${name} succeeded: ${JSON.stringify(s.data)}`);
  assert.equal(s.status, status, `step ${name}: ${s.error}`);
  return s.error!;
}

test('a password login (form-encoded ticket POST) reads datastores, status, groups, snapshots, tasks, version and node status', async () => {
  const steps = await runScript('read');
  assert.equal(ok(steps, 'login'), true);
  assert.deepEqual(ok(steps, 'ticket'), [true, true], 'ticket and CSRF token');
  const version = ok(steps, 'version');
  assert.equal(typeof version.version, 'string');
  assert.equal(typeof version.release, 'string');

  const stores = ok(steps, 'datastores');
  assert.deepEqual(
    stores.map((s: { store: string; comment?: string }) => [s.store, s.comment]),
    [[STORE, 'primary']],
  );
  const status = ok(steps, 'status');
  for (const k of ['total', 'used', 'avail']) assert.equal(typeof status[k], 'number', k);
  assert.deepEqual(
    ok(steps, 'usage').map((u: { store: string }) => u.store),
    [STORE],
  );

  const groups = ok(steps, 'groups');
  assert.equal(groups.length, 1);
  assert.equal(groups[0]['backup-type'], 'vm');
  assert.equal(groups[0]['backup-id'], '100');
  assert.equal(groups[0]['backup-count'], 1);
  assert.equal(groups[0]['last-backup'], T1);
  assert.equal(groups[0].owner, 'root@pam');
  for (const name of ['snapshots', 'snapshots-of-group']) {
    const snaps = ok(steps, name);
    assert.equal(snaps.length, 1, name);
    assert.equal(snaps[0]['backup-time'], T1);
    assert.deepEqual(snaps[0].files.map((f: { filename: string }) => f.filename).sort(), [
      'drive-scsi0.img.fidx',
      'index.json.blob',
    ]);
  }

  assert.ok(Array.isArray(ok(steps, 'tasks')));
  const node = ok(steps, 'node-status');
  assert.ok(node.memory.total > 0);
  assert.equal(node.info.fingerprint, t.server.fingerprint);
  // proxmoxer renews a ticket by posting it as the password
  assert.deepEqual(ok(steps, 'renewed'), { datastores: 1, renewed: true });
});

test('maintenance mode set with a quoted message through PUT config/datastore, read back, seen by active-operations, enforced, and cleared with delete', async () => {
  const steps = await runScript('maintenance');
  assert.equal(ok(steps, 'set'), null);
  const mode = 'read-only,message="disk swap"';
  assert.equal(ok(steps, 'config')['maintenance-mode'], mode);
  assert.equal(ok(steps, 'listed')[0].maintenance, mode);
  const ops = ok(steps, 'active-operations');
  assert.deepEqual([ops.read, ops.write], [0, 0]);

  // the operator's script sees why a call was refused
  assert.equal(
    refused(steps, 'refused-write', 503),
    `503 Service Unavailable: datastore '${STORE}' is unavailable: read-only maintenance mode: disk swap`,
  );
  assert.equal(
    refused(steps, 'unknown-parameter', 400),
    "400 Bad Request: parameter verification failed - 'colour': schema does not allow additional properties",
  );
  assert.match(refused(steps, 'bad-mode', 400), /^400 Bad Request: .*maintenance-mode.*'sideways'/);

  assert.equal(ok(steps, 'clear'), null);
  assert.equal(ok(steps, 'config-after')['maintenance-mode'], undefined);
  const cfg = await t.api('GET', `/config/datastore/${STORE}`, { auth: t.root });
  assert.equal((cfg.body.data as Record<string, unknown>)['maintenance-mode'], undefined);
});

test('namespaces are created (also below a parent), listed and deleted with query parameters', async () => {
  const steps = await runScript('namespaces');
  assert.equal(ok(steps, 'create'), 'tenant1');
  assert.equal(ok(steps, 'create-child'), 'tenant1/web');
  assert.deepEqual(
    ok(steps, 'list').map((n: { ns: string }) => n.ns),
    ['', 'tenant1', 'tenant1/web'],
  );
  assert.deepEqual(
    ok(steps, 'list-below').map((n: { ns: string }) => n.ns),
    ['tenant1'],
  );
  assert.equal(ok(steps, 'delete')['removed-groups'], 0);
  assert.deepEqual(
    ok(steps, 'list-after').map((n: { ns: string }) => n.ns),
    [''],
  );
});

test('an API token created with a parameterless POST logs in (PBSAPIToken=id:secret), lists datastores, and is refused with the reason', async () => {
  const steps = await runScript('token');
  const created = ok(steps, 'create');
  assert.equal(created.tokenid, `${OPS}!script`);
  assert.match(created.value, /^[0-9a-f-]{36}$/);
  assert.equal(ok(steps, 'grant'), null);
  assert.deepEqual(
    ok(steps, 'list-tokens').map((tk: { tokenid: string }) => tk.tokenid),
    [`${OPS}!script`],
  );
  assert.deepEqual(
    ok(steps, 'token-datastores').map((s: { store: string }) => s.store),
    [STORE],
  );
  assert.equal(typeof ok(steps, 'token-status').total, 'number');
  assert.equal(
    refused(steps, 'token-put', 403),
    `403 Forbidden: permission check failed - missing Datastore.Modify on /datastore/${STORE}`,
  );
  assert.equal(refused(steps, 'wrong-secret', 401), '401 Unauthorized: authentication failed');
});

test('a garbage collection started with a parameterless POST is followed by its UPID to the end: status with endtime, log, list', async () => {
  const steps = await runScript('tasks');
  const upid = ok(steps, 'start-gc');
  assert.match(
    upid,
    /^UPID:testnode:[0-9A-F]{8}:[0-9A-F]{8}:[0-9A-F]{8}:[0-9A-F]{8}:garbage_collection:store1:root@pam:$/,
  );
  const status = ok(steps, 'status');
  assert.equal(status.upid, upid);
  assert.equal(status.status, 'stopped');
  assert.equal(status.exitstatus, 'OK');
  assert.equal(status.type, 'garbage_collection');
  assert.equal(status.id, STORE);
  assert.equal(status.user, 'root@pam');
  // PBS reports when a stopped task ended; scripts compute durations from it
  assert.ok(status.endtime >= status.starttime, JSON.stringify(status));
  const log = ok(steps, 'log');
  assert.equal(log[0].n, 1);
  assert.ok(
    log.some((l: { t: string }) => l.t.includes('Start GC phase1')),
    JSON.stringify(log),
  );
  assert.deepEqual(
    ok(steps, 'list').map((task: { upid: string }) => task.upid),
    [upid],
  );
  assert.match(refused(steps, 'missing', 404), /^404 Not Found: no such task 'UPID:.*:verify:/);
  assert.equal(
    refused(steps, 'bad-node', 400),
    "400 Bad Request: parameter verification failed - 'node': no such node 'elsewhere'",
  );
});

test("a user without privileges sees an empty datastore list, and each refusal's reason in the exception", async () => {
  const steps = await runScript('refused', NOBODY, passwordOf(NOBODY));
  assert.deepEqual(ok(steps, 'datastores'), []);
  assert.equal(
    refused(steps, 'status', 403),
    `403 Forbidden: permission check failed - missing Datastore.Audit|Datastore.Backup on /datastore/${STORE}`,
  );
  assert.equal(
    refused(steps, 'maintenance', 403),
    `403 Forbidden: permission check failed - missing Datastore.Modify on /datastore/${STORE}`,
  );
  assert.match(refused(steps, 'missing-store', 403), /^403 Forbidden: permission check failed/);
  assert.equal(
    refused(steps, 'unknown-path', 404),
    "404 Not Found: Path '/api2/json/nodes/localhost/nosuch' not found.",
  );
  // proxmoxer reads no reason from a failed login; it raises its own AuthenticationError
  assert.match(
    refused(steps, 'wrong-password', null),
    /^AuthenticationError: Couldn't authenticate user: nobody@pbs/,
  );
});
