/**
 * A maintenance window end to end, on the real `stowage server` process (its scheduler passing
 * every 300 ms, STOWAGE_SCHEDULER_TICK_MS) with the real client: a window created over HTTPS
 * whose drain-before has already begun refuses a new backup with the window's start time, enters
 * by itself at its start (read-only: the backup is refused with the window's message, a restore
 * goes on), skips the prune job due at its start with the window's message, leaves by itself at
 * its end, and a backup then succeeds. The history API has every step.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ApiClient } from '../../src/client/connection.js';
import { EXIT } from '../../src/cli/exit-codes.js';
import { ServerProcess, freePort } from '../helpers/cli.js';
import { runClient, runTreeBackup } from './backup-helpers.js';

const PASSWORD = 'window-test-pw1';
const STORE = 'local';
const T0 = 1_700_000_000;

let root: string;
let server: ServerProcess;
let api: ApiClient;
let env: NodeJS.ProcessEnv;
let tree: string;

before(async () => {
  root = mkdtempSync(join(tmpdir(), 'stowage-window-'));
  const port = await freePort();
  server = new ServerProcess(['--quickstart', '--listen', `127.0.0.1:${port}`], {
    STOWAGE_DATA_DIR: root,
    STOWAGE_CONFIG_DIR: join(root, 'etc'),
    STOWAGE_RUN_DIR: join(root, 'run'),
    STOWAGE_ROOT_PASSWORD: PASSWORD,
    STOWAGE_SCHEDULER_TICK_MS: '300',
  });
  await server.started();
  const fingerprint = /fingerprint: (\S+)/.exec(server.output)![1]!;
  const target = { host: '127.0.0.1', port };
  const login = await new ApiClient(target, { fingerprint }).call<{
    ticket: string;
    CSRFPreventionToken: string;
  }>('POST', '/access/ticket', { username: 'root@pam', password: PASSWORD });
  api = new ApiClient(
    target,
    { fingerprint },
    { kind: 'ticket', ticket: login.ticket, csrf: login.CSRFPreventionToken },
  );
  env = {
    PATH: process.env.PATH,
    HOME: join(root, 'home'),
    STOWAGE_REPOSITORY: `root@pam@127.0.0.1:${port}:${STORE}`,
    STOWAGE_PASSWORD: PASSWORD,
    STOWAGE_FINGERPRINT: fingerprint,
  };
  tree = join(root, 'tree');
  mkdirSync(tree);
  writeFileSync(join(tree, 'a.txt'), 'window test data\n'.repeat(1000));
});

after(async () => {
  await server?.stop();
  rmSync(root, { recursive: true, force: true });
});

/** A calendar event that fires once, at `date` (UTC, whole seconds). */
const onceAt = (date: Date) => date.toISOString().slice(0, 19).replace('T', ' ');
const iso = (date: Date) => date.toISOString().replace(/\.\d{3}Z$/, 'Z');

interface HoldItem {
  source: string;
  type: string;
  message: string;
}

const holds = async () =>
  (await api.call<{ holds: HoldItem[] }>('GET', `/admin/datastore/${STORE}/active-operations`)).holds;

async function waitFor<T>(what: string, probe: () => Promise<T | undefined>, timeoutMs = 30_000): Promise<T> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = await probe();
    if (v !== undefined) return v;
    if (Date.now() > end) assert.fail(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

test('a window drains, enters and leaves by itself, skips the job due inside it, and backups then go on', async () => {
  assert.equal((await runTreeBackup(env, tree, 'web', T0)).code, 0);

  // the window starts in 15 s and its 60 s drain-before has already begun
  const start = new Date(Math.ceil(Date.now() / 1000) * 1000 + 15_000);
  await api.call('POST', '/config/maintenance-window', {
    id: 'disk-check',
    store: STORE,
    schedule: onceAt(start),
    duration: '5s',
    type: 'read-only',
    message: 'disk check',
    'drain-before': '60s',
  });
  await api.call('POST', '/config/prune', {
    id: 'at-start',
    store: STORE,
    schedule: onceAt(start),
    'keep-last': 5,
  });
  // the window took its hold at once (the config API applies it, not the next scheduler pass)
  assert.deepEqual(
    (await holds()).map((h) => [h.source, h.type]),
    [['window:disk-check', 'drain']],
  );
  const listed = await api.call<Array<{ store: string; 'next-maintenance-window'?: { start: number } }>>(
    'GET',
    '/admin/datastore',
  );
  assert.equal(
    listed.find((s) => s.store === STORE)?.['next-maintenance-window']?.start,
    start.getTime() / 1000,
  );

  const drained = await runTreeBackup(env, tree, 'web', T0 + 60);
  assert.equal(drained.code, EXIT.MAINTENANCE, drained.stderr);
  assert.match(
    drained.stderr,
    new RegExp(`read-only maintenance window at ${iso(start)}: disk check`),
    'the refusal names the start time',
  );

  // the window enters by itself: read-only with its message; a restore goes on
  await waitFor('the window to start', async () =>
    (await holds()).some((h) => h.type === 'read-only') ? true : undefined,
  );
  assert.ok(Date.now() >= start.getTime() - 1000, 'the window did not start early');
  const inWindow = await runTreeBackup(env, tree, 'web', T0 + 120);
  assert.equal(inWindow.code, EXIT.MAINTENANCE, inWindow.stderr);
  assert.match(inWindow.stderr, /read-only maintenance window: disk check/);
  const out = join(root, 'restored.tar');
  const restore = await runClient(['restore', `host/web/${iso(new Date(T0 * 1000))}`, 'root.tar', out], env);
  assert.equal(restore.code, 0, restore.stderr);
  assert.equal(readFileSync(join(out, 'a.txt'), 'utf8'), readFileSync(join(tree, 'a.txt'), 'utf8'));

  // the prune job due at the start is recorded as skipped with the window's message
  const job = await waitFor('the prune job to be recorded', async () => {
    const jobs = await api.call<Array<{ id: string; 'last-run-state'?: string }>>('GET', '/admin/prune');
    return jobs.find((j) => j.id === 'at-start' && j['last-run-state']);
  });
  assert.equal(
    job['last-run-state'],
    'skipped: maintenance: read-only: read-only maintenance window: disk check',
  );

  // ... and leaves by itself at its end; a backup succeeds
  await waitFor('the window to end', async () => ((await holds()).length === 0 ? true : undefined));
  assert.ok(Date.now() >= start.getTime() + 5000 - 1000, 'the window did not end early');
  const afterWindow = await runTreeBackup(env, tree, 'web', T0 + 180);
  assert.equal(afterWindow.code, 0, afterWindow.stderr);

  const history = await api.call<Array<{ type: string; source: string; to?: string }>>(
    'GET',
    `/admin/datastore/${STORE}/maintenance-history`,
  );
  assert.deepEqual(
    history
      .reverse()
      .filter((e) => e.type !== 'drained')
      .map((e) => `${e.type} ${e.source} ${e.to ?? ''}`.trim()),
    [
      'hold-engaged window:disk-check drain',
      'window-starting window:disk-check read-only',
      'hold-engaged window:disk-check read-only',
      'job-skipped job:at-start',
      'hold-released window:disk-check none',
    ],
  );
});
