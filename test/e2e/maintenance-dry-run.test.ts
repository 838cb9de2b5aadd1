/**
 * `dry-run` on a maintenance-mode change (`PUT /config/datastore/{name}`, issue 13 "pre-flight"):
 * over real HTTPS, with operations held by another real process, the answer lists the running
 * operations the new mode refuses (with who and what) and the scheduled jobs it would skip, in
 * whichever way the parameters come (query, JSON body, form body), and nothing changes: the
 * datastore.cfg bytes, the mode in force, the operations.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { HolderProcess } from '../helpers/holder-process.js';
import { startTestServer, type ApiReply, type TestServer } from '../helpers/https-api.js';

let t: TestServer;
let holder: HolderProcess;
const STORE = 'store1';

interface DryRun {
  'dry-run': boolean;
  'mode-changes': boolean;
  'maintenance-mode'?: string;
  conflicting: Array<{ class: string; kind: string; detail?: string; 'auth-id'?: string; pid: number }>;
  'skipped-jobs': Array<{ type: string; id: string; schedule?: string; 'next-run'?: number }>;
}

before(async () => {
  t = await startTestServer({ prefix: 'stowage-e2e-dryrun-' });
  await t.addBareDatastore(STORE, { 'gc-schedule': 'daily' });
  await t.addBareDatastore('other1', { 'gc-schedule': 'daily' });
  const jobs: Array<[string, Record<string, unknown>]> = [
    ['/config/prune', { id: 'prune-daily', store: STORE, schedule: 'daily', 'keep-last': 3 }],
    ['/config/verify', { id: 'verify-weekly', store: STORE, schedule: 'sat 02:00' }],
    ['/config/verify', { id: 'verify-ro', store: STORE, schedule: 'sun 02:00', 'read-only': true }],
    ['/config/verify', { id: 'verify-manual', store: STORE }], // no schedule: never skipped
    ['/config/prune', { id: 'prune-other', store: 'other1', schedule: 'daily', 'keep-last': 1 }],
  ];
  for (const [path, body] of jobs) {
    const res = await t.api('POST', path, { auth: t.root, body });
    assert.equal(res.status, 200, `${path} ${JSON.stringify(res.body)}`);
  }
  holder = await new HolderProcess(t.paths).start();
  await holder.hold(STORE, 'ingest', 'backup', 'host/web01', 'alice@pbs');
  await holder.hold(STORE, 'read', 'reader', 'host/web02/2024-06-01T10:00:00Z', 'bob@pbs');
  await holder.hold(STORE, 'lookup', 'status');
});

after(async () => {
  await holder?.stop();
  await t?.close();
});

const cfgFile = () => readFileSync(join(t.paths.configDir, 'datastore.cfg'));

async function activeMode(): Promise<string | undefined> {
  const res = await t.api('GET', `/admin/datastore/${STORE}/active-operations`, { auth: t.root });
  assert.equal(res.status, 200);
  return (res.body.data as { 'maintenance-mode'?: string })['maintenance-mode'];
}

/** A dry run that must change nothing; returns its answer. */
async function dryRun(send: () => Promise<ApiReply>): Promise<DryRun> {
  const before = cfgFile();
  const modeBefore = await activeMode();
  const res = await send();
  assert.equal(res.status, 200, JSON.stringify(res.body));
  assert.deepEqual(cfgFile(), before, 'datastore.cfg is byte-identical after a dry run');
  assert.equal(await activeMode(), modeBefore, 'the mode in force is unchanged');
  return res.body.data as DryRun;
}

const summary = (d: DryRun) => ({
  conflicting: d.conflicting.map((o) =>
    `${o.class} ${o.kind} ${o.detail ?? ''} ${o['auth-id'] ?? ''}`.trim(),
  ),
  skipped: d['skipped-jobs'].map((j) => `${j.type} ${j.id}`).sort(),
});

test('dry-run read-only, parameters in the query: the running backup conflicts, the writing jobs would be skipped', async () => {
  const d = await dryRun(() =>
    t.api('PUT', `/config/datastore/${STORE}?dry-run=1&maintenance-mode=read-only`, { auth: t.root }),
  );
  assert.equal(d['dry-run'], true);
  assert.equal(d['mode-changes'], true);
  assert.equal(d['maintenance-mode'], 'read-only');
  assert.deepEqual(summary(d), {
    conflicting: ['ingest backup host/web01 alice@pbs'],
    skipped: ['garbage_collection store1', 'prunejob prune-daily', 'verificationjob verify-weekly'],
  });
  assert.equal(d.conflicting[0]!.pid, holder.pid, 'the operation of the other process, with its pid');
  for (const job of d['skipped-jobs']) assert.ok(job.schedule && job['next-run']! > Date.now() / 1000);
});

test('dry-run sealed, no body (parameters in the query): only the ingesting backup conflicts; GC, prune and verify would run', async () => {
  const d = await dryRun(() =>
    t.api(
      'PUT',
      `/config/datastore/${STORE}?dry-run=1&maintenance-mode=${encodeURIComponent('sealed,message="retiring"')}`,
      {
        auth: t.root,
      },
    ),
  );
  assert.equal(d['maintenance-mode'], 'sealed,message="retiring"');
  assert.deepEqual(summary(d), { conflicting: ['ingest backup host/web01 alice@pbs'], skipped: [] });
});

test('dry-run offline, parameters in a JSON body: reads conflict too and every scheduled job would be skipped', async () => {
  const d = await dryRun(() =>
    t.api('PUT', `/config/datastore/${STORE}`, {
      auth: t.root,
      body: { 'maintenance-mode': 'offline,message="fsck"', 'dry-run': true },
    }),
  );
  assert.equal(d['maintenance-mode'], 'offline,message="fsck"');
  assert.deepEqual(summary(d), {
    conflicting: [
      'ingest backup host/web01 alice@pbs',
      'read reader host/web02/2024-06-01T10:00:00Z bob@pbs',
    ],
    skipped: [
      'garbage_collection store1',
      'prunejob prune-daily',
      'verificationjob verify-ro',
      'verificationjob verify-weekly',
    ],
  });
});

test('dry-run, parameters in a form body (as the web UI sends them), from read-only to offline', async () => {
  const set = await t.api('PUT', `/config/datastore/${STORE}`, {
    auth: t.root,
    body: { 'maintenance-mode': 'read-only' },
  });
  assert.equal(set.status, 200);
  try {
    const d = await dryRun(() =>
      t.api('PUT', `/config/datastore/${STORE}`, {
        auth: t.root,
        form: 'maintenance-mode=offline&dry-run=1',
      }),
    );
    assert.equal(d['maintenance-mode'], 'offline');
    assert.equal(d.conflicting.length, 2);
    assert.equal(d['skipped-jobs'].length, 4);
    // clearing would refuse nothing: no conflict, no skipped job
    const clear = await dryRun(() =>
      t.api('PUT', `/config/datastore/${STORE}`, { auth: t.root, form: 'delete=maintenance-mode&dry-run=1' }),
    );
    assert.equal(clear['mode-changes'], true);
    assert.equal(clear['maintenance-mode'], undefined);
    assert.deepEqual(summary(clear), { conflicting: [], skipped: [] });
  } finally {
    await t.api('PUT', `/config/datastore/${STORE}`, { auth: t.root, body: { delete: 'maintenance-mode' } });
  }
});

test('a dry run with bad input is refused as the change itself would be, naming the parameter', async () => {
  const before = cfgFile();
  const bad = await t.api('PUT', `/config/datastore/${STORE}`, {
    auth: t.root,
    body: { 'maintenance-mode': 'sideways', 'dry-run': true },
  });
  assert.equal(bad.status, 400);
  assert.match(bad.body.message ?? '', /'maintenance-mode': unknown type 'sideways'/);
  const reserved = await t.api('PUT', `/config/datastore/${STORE}`, {
    auth: t.root,
    form: 'maintenance-mode=delete&dry-run=1',
  });
  assert.equal(reserved.status, 400);
  assert.match(reserved.body.message ?? '', /'maintenance-mode': type 'delete' cannot be set by hand/);
  const missing = await t.api('PUT', '/config/datastore/nosuch?dry-run=1&maintenance-mode=offline', {
    auth: t.root,
  });
  assert.equal(missing.status, 404);
  assert.deepEqual(cfgFile(), before);
});

test('a dry run needs the privilege of the change itself', async () => {
  const auditor = await t.addUser('audit@pbs', [{ path: `/datastore/${STORE}`, role: 'DatastoreAudit' }]);
  const res = await t.api('PUT', `/config/datastore/${STORE}?dry-run=1&maintenance-mode=offline`, {
    auth: auditor,
  });
  assert.equal(res.status, 403);
});
