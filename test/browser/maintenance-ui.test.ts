/**
 * The web UI in a real browser (Debian's Chromium via playwright-core) against a real HTTPS
 * server: log in, put a datastore into read-only and offline maintenance while an operation from
 * another process is running, watch it drain, clear the mode; the dialog's own checks and the
 * server's refusals; session expiry. Screenshots of the main views go to docs/screenshots.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Page } from 'playwright-core';
import { spawnClient } from '../e2e/backup-helpers.js';
import { HolderProcess } from '../helpers/holder-process.js';
import { runScheduledJob } from '../../src/jobs/job-runner.js';
import { gcJob } from '../../src/jobs/jobs.js';
import { browserSkipReason, Harness, screenshot } from './harness.js';

const skip = browserSkipReason();
if (skip) console.log(`# skipping browser tests: ${skip}`);

const STORE = 'store1';
const MESSAGE = 'replacing disk 3, back at 14:00';

/** Console errors except the listed HTTP statuses the test itself provokes. */
function unexpected(errors: string[], allowedStatuses: number[] = []): string[] {
  return errors.filter(
    (e) =>
      !allowedStatuses.some((s) =>
        e.includes(`Failed to load resource: the server responded with a status of ${s}`),
      ),
  );
}

interface OperationsReply {
  operations: Array<{ kind?: string; detail?: string; 'auth-id'?: string }>;
  conflicting: number;
}

/** A real `stowage-client backup` in its own process, with its exit code and output. */
interface RunningBackup {
  proc: ChildProcess;
  exited: Promise<number>;
  output: () => string;
}

function startBackup(h: Harness, store: string, args: string[]): RunningBackup {
  const proc = spawnClient(['backup', ...args], h.clientEnv(store));
  let output = '';
  proc.stdout!.on('data', (d: Buffer) => (output += d.toString()));
  proc.stderr!.on('data', (d: Buffer) => (output += d.toString()));
  const exited = new Promise<number>((r) => proc.once('close', (code) => r(code ?? -1)));
  return { proc, exited, output: () => output };
}

/** Poll the API until `store` runs an operation matching `pred` (the server admitted it). */
async function waitForOperation(
  h: Harness,
  store: string,
  pred: (op: OperationsReply['operations'][number]) => boolean,
  what: () => string,
): Promise<void> {
  const deadline = Date.now() + 30_000;
  for (;;) {
    const res = await h.api<OperationsReply>('GET', `/admin/datastore/${store}/active-operations`);
    assert.equal(res.status, 200, JSON.stringify(res.body));
    if (res.body.data.operations.some(pred)) return;
    assert.ok(Date.now() < deadline, `the operation never started: ${what()}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

async function openMaintenanceDialog(page: Page) {
  await page.getByRole('button', { name: 'Edit maintenance' }).click();
  const dialog = page.getByRole('dialog', { name: `Maintenance mode of ${STORE}` });
  await dialog.waitFor();
  return dialog;
}

describe('web UI', { skip }, () => {
  const h = new Harness();

  before(async () => {
    await h.start();
    await h.createDatastore(STORE, 'main store');
    await h.createDatastore('archive', 'cold copies');
  });

  after(async () => {
    await h.stop();
  });

  test('an operator sets read-only while a real backup runs, watches it drain, goes offline and clears the mode', async () => {
    // a disk image large enough that the client spends seconds reading, hashing and uploading it:
    // random 4 MiB blocks between zeroed ones, so chunks are both new and deduplicated
    const image = join(h.dir, 'web01-disk.img');
    const data = Buffer.alloc(96 * 1024 * 1024);
    for (let off = 0; off < data.length; off += 8 * 1024 * 1024) randomBytes(4 * 1024 * 1024).copy(data, off);
    writeFileSync(image, data);
    const holder = await new HolderProcess(h.paths).start();
    const { context, page, errors } = await h.newPage();
    let backup: RunningBackup | undefined;
    try {
      await h.login(page);
      const row = page.locator(`tr[data-store="${STORE}"]`);
      await row.getByText('none').waitFor();
      assert.equal(await row.getByTestId('maintenance-marker').count(), 0);
      await row.getByRole('link', { name: STORE }).click();
      await page.getByRole('link', { name: 'Options & maintenance' }).click();
      // a page reload would drop this; the drain must be seen without one
      await page.evaluate('window.noReload = true');

      // a backup admitted before the change: the real client, from its own process
      backup = startBackup(h, STORE, [
        `disk.img:${image}`,
        '--backup-id',
        'web01',
        '--backup-time',
        '1700000000',
      ]);
      const running = backup;
      await waitForOperation(h, STORE, (op) => op.kind === 'backup', running.output);
      // Paused while the operator acts, so the test does not depend on how fast this machine
      // backs up 96 MiB; the server only sees a client that is slow for a moment.
      running.proc.kill('SIGSTOP');
      await waitForOperation(
        h,
        STORE,
        (op) => op.kind === 'backup',
        () => 'the backup finished before it could be paused',
      );

      let dialog = await openMaintenanceDialog(page);
      await dialog.getByLabel('Read-only').check();
      await dialog.getByLabel(/^Message/).fill(MESSAGE);
      await screenshot(page, 'maintenance-dialog');
      await dialog.getByRole('button', { name: 'Save' }).click();
      await dialog.waitFor({ state: 'detached' });

      const drain = page.getByTestId('drain-status');
      await drain
        .getByText(
          /1 conflicting operation still running: backup host\/web01\/2023-11-14T22:13:20Z by root@pam since \d\d:\d\d/,
        )
        .waitFor();
      const opsTable = page.getByTestId('ops-table');
      await opsTable.getByText('conflicting').waitFor();
      assert.match(
        await opsTable.innerText(),
        /backup conflicting\s+host\/web01\/2023-11-14T22:13:20Z\s+ingest\s+root@pam/,
      );
      await screenshot(page, 'active-operations', { fullPage: true });

      // the backup goes on, completes, and the status line turns into "drained" by polling alone
      running.proc.kill('SIGCONT');
      await drain.getByText('drained: no conflicting operations are running').waitFor({ timeout: 60_000 });
      assert.equal(await page.evaluate('window.noReload'), true);
      assert.equal(await running.exited, 0, running.output());
      const snaps = await h.api<Array<{ 'backup-id': string; 'backup-time': number; size?: number }>>(
        'GET',
        `/admin/datastore/${STORE}/snapshots?backup-type=host&backup-id=web01`,
      );
      assert.deepEqual(
        snaps.body.data.map((s) => s['backup-time']),
        [1_700_000_000],
      );
      assert.ok((snaps.body.data[0]!.size ?? 0) > data.length, 'the whole image and the manifest are there');
      assert.equal(await opsTable.getByText('conflicting').count(), 0);

      // the list shows the marker: icon, type and message as text, the full sentence as title
      await page.getByRole('link', { name: 'Datastores' }).first().click();
      const marker = row.getByTestId('maintenance-marker');
      await marker.waitFor();
      assert.equal(await marker.innerText(), `Read-only: ${MESSAGE}`);
      assert.equal(await marker.getAttribute('title'), `read-only maintenance: ${MESSAGE}`);
      await page.locator('tr[data-store="archive"]').getByText('none').waitFor();
      await screenshot(page, 'datastore-list');

      // read-only admits reads: the summary shows usage, not a maintenance panel
      await row.getByRole('link', { name: STORE }).click();
      await page.getByRole('heading', { name: 'Usage' }).waitFor();
      assert.equal(await page.getByTestId('maintenance-panel').count(), 0);

      // offline with "set and wait": a restore reading from the store holds it up until it ends
      const restore = await holder.hold(STORE, 'read', 'restore', 'host/web01');
      dialog = await openMaintenanceDialog(page);
      await dialog.getByLabel('Offline').check();
      await dialog.getByLabel(/^Message/).fill('fsck of /dev/sdc');
      await dialog.getByRole('switch', { name: /Wait until/ }).check();
      await dialog.getByRole('button', { name: 'Set and wait' }).click();
      const waiting = page.getByRole('dialog', { name: `Waiting for ${STORE} to drain` });
      await waiting.getByText(/1 conflicting operation still running: restore host\/web01/).waitFor();
      await screenshot(page, 'set-and-wait');
      await holder.send({ cmd: 'release', id: restore });
      await waiting.getByText(/Drained: no conflicting operations remain/).waitFor();
      await waiting.getByRole('button', { name: 'Close', exact: true }).last().click();

      // offline: the summary is a maintenance panel, not an error
      const panel = page.getByTestId('maintenance-panel');
      await panel.getByText('maintenance: fsck of /dev/sdc').waitFor();
      await page.getByTestId('drain-status').getByText('Offline: drained').waitFor();
      await screenshot(page, 'datastore-offline');
      await page.getByRole('link', { name: 'Content' }).click();
      await panel.waitFor();

      // clear the mode: the marker disappears from the list, the summary shows usage again
      dialog = await openMaintenanceDialog(page);
      await dialog.getByLabel('None').check();
      await dialog.getByRole('button', { name: 'Save' }).click();
      await dialog.waitFor({ state: 'detached' });
      await page.getByRole('link', { name: 'Summary' }).click();
      await page.getByRole('heading', { name: 'Usage' }).waitFor();
      await page.getByRole('link', { name: 'Datastores' }).first().click();
      await row.getByText('none').waitFor();
      assert.equal(await row.getByTestId('maintenance-marker').count(), 0);
      const cfg = await h.api<Record<string, unknown>>('GET', `/config/datastore/${STORE}`);
      assert.equal(cfg.body.data['maintenance-mode'], undefined);

      // tasks: the create-datastore tasks, with their logs
      await page.getByRole('link', { name: 'Tasks' }).click();
      await page.getByRole('heading', { name: 'Finished' }).waitFor();
      const createTask = page
        .locator('table.tasks tr', { hasText: 'create-datastore' })
        .filter({ hasText: STORE });
      await createTask.waitFor();
      await screenshot(page, 'tasks');
      await createTask.getByRole('link').click();
      await page.getByTestId('task-log').getByText(`create datastore '${STORE}'`).waitFor();
      await page.getByTestId('task-status').getByText('OK').waitFor();
      await screenshot(page, 'task-log');

      assert.deepEqual(unexpected(errors), []);
    } finally {
      backup?.proc.kill('SIGKILL'); // only if the test failed before it ended
      await context.close();
      await holder.stop();
    }
  });

  test("the maintenance dialog refuses a bad message itself and shows the server's refusal when bypassed", async () => {
    await h.api('PUT', `/config/datastore/${STORE}`, { delete: ['maintenance-mode'] });
    const { context, page, errors } = await h.newPage();
    try {
      await h.login(page);
      await page.goto(`${h.server.url}/#/datastore/${STORE}/options`);
      const dialog = await openMaintenanceDialog(page);
      await dialog.getByLabel('Read-only').check();
      const message = dialog.getByLabel(/^Message/);
      const help = dialog.getByTestId('message-help');
      const save = dialog.getByRole('button', { name: 'Save' });

      await message.fill('x'.repeat(64));
      assert.equal(await help.innerText(), '64/64 characters, no control characters');
      assert.equal(await save.isEnabled(), true);
      await message.fill('x'.repeat(65));
      assert.equal(await help.innerText(), 'The message is 65 characters long; at most 64 are allowed.');
      assert.equal(await message.getAttribute('aria-invalid'), 'true');
      assert.equal(await save.isEnabled(), false);
      await message.fill('disk\tswap');
      assert.equal(await help.innerText(), 'The message must not contain control characters (found U+0009).');
      assert.equal(await save.isEnabled(), false);

      // bypass the form: rewrite the request on its way out, as a hand-made client would send it
      await page.route('**/api2/json/config/datastore/*', async (route) => {
        if (route.request().method() !== 'PUT') return route.continue();
        const body = JSON.parse(route.request().postData() ?? '{}') as Record<string, unknown>;
        body['maintenance-mode'] = `read-only,message="${'y'.repeat(65)}"`;
        await route.continue({ postData: JSON.stringify(body) });
      });
      await message.fill('fine');
      await save.click();
      const alert = dialog.getByRole('alert');
      await alert.getByText(/message is 65 characters long, at most 64 are allowed/).waitFor();
      assert.match(await alert.innerText(), /^The server refused the change: /);
      await page.unroute('**/api2/json/config/datastore/*');
      let cfg = await h.api<Record<string, unknown>>('GET', `/config/datastore/${STORE}`);
      assert.equal(cfg.body.data['maintenance-mode'], undefined, 'the refused change is not stored');

      // a concurrent change makes the dialog's digest stale only if it changes between read and
      // write; here the dialog reads it fresh, so a quoted message with commas and quotes round-trips
      await message.fill('say "hi", then \\ go');
      await save.click();
      await dialog.waitFor({ state: 'detached' });
      cfg = await h.api<Record<string, unknown>>('GET', `/config/datastore/${STORE}`);
      assert.equal(cfg.body.data['maintenance-mode'], 'read-only,message="say \\"hi\\", then \\\\ go"');
      await page.getByTestId('maintenance-marker').first().getByText('say "hi", then \\ go').waitFor();

      // Escape closes the dialog without saving (keyboard use)
      const again = await openMaintenanceDialog(page);
      await again.getByLabel('None').focus();
      await page.keyboard.press('Space');
      await page.keyboard.press('Escape');
      await again.waitFor({ state: 'detached' });
      cfg = await h.api<Record<string, unknown>>('GET', `/config/datastore/${STORE}`);
      assert.match(String(cfg.body.data['maintenance-mode']), /^read-only/);

      const clear = await h.api('PUT', `/config/datastore/${STORE}`, { delete: ['maintenance-mode'] });
      assert.equal(clear.status, 200, JSON.stringify(clear.body));
      assert.deepEqual(unexpected(errors, [400]), []);
      assert.equal(errors.length, 1, 'exactly the one refused PUT');
    } finally {
      await context.close();
    }
  });

  test('a datastore being removed looks different from one in maintenance, on a phone-sized screen too', async () => {
    await h.api('PUT', `/config/datastore/${STORE}`, { 'maintenance-mode': 'offline,message="moving"' });
    // removal sets `delete` and then waits for this restore before it removes anything
    const holder = await new HolderProcess(h.paths).start();
    const { context, page, errors } = await h.newPage({ width: 390, height: 844 });
    try {
      const restore = await holder.hold('archive', 'read', 'restore', 'vm/100');
      const removal = await h.api<string>('DELETE', '/config/datastore/archive?timeout=120');
      assert.equal(removal.status, 200, JSON.stringify(removal.body));
      for (let i = 0; i < 100; i++) {
        const list = await h.api<Array<{ store: string; maintenance?: string }>>('GET', '/admin/datastore');
        if (list.body.data.find((s) => s.store === 'archive')?.maintenance === 'delete') break;
        await new Promise((r) => setTimeout(r, 100));
      }

      await h.login(page);
      const deleting = page.locator('tr[data-store="archive"]');
      await deleting.getByTestId('maintenance-marker').getByText('Being deleted').waitFor();
      assert.equal(await deleting.getAttribute('class'), 'ds-deleting');
      const offline = page.locator(`tr[data-store="${STORE}"]`);
      assert.equal(await offline.getAttribute('class'), 'ds-maintenance');
      assert.equal(await offline.getByTestId('maintenance-marker').innerText(), 'Offline: moving');
      const overflow = await page.evaluate<number>(
        'document.documentElement.scrollWidth - window.innerWidth',
      );
      assert.ok(overflow <= 0, `the page scrolls sideways by ${overflow}px on a phone`);
      await screenshot(page, 'datastore-list-phone');

      await page.goto(`${h.server.url}/#/datastore/archive/summary`);
      await page.getByTestId('maintenance-panel').getByText('This datastore is being deleted').waitFor();
      assert.equal(await page.getByRole('button', { name: 'Edit maintenance' }).isDisabled(), true);

      // the restore ends, the removal finishes, and the datastore leaves the list
      await holder.send({ cmd: 'release', id: restore });
      await page.goto(`${h.server.url}/#/`);
      await page.locator('tr[data-store="archive"]').waitFor({ state: 'detached', timeout: 15_000 });
      assert.deepEqual(unexpected(errors), []);
    } finally {
      await context.close();
      await holder.stop();
      await h.api('PUT', `/config/datastore/${STORE}`, { delete: ['maintenance-mode'] });
    }
  });

  test('the PBS 4 modes show as Unmounting and S3 refresh, refuse the contents, and can be reset', async () => {
    const { context, page, errors } = await h.newPage();
    try {
      await h.api('PUT', `/config/datastore/${STORE}`, { 'maintenance-mode': 'unmount' });
      await h.login(page);
      const row = page.locator(`tr[data-store="${STORE}"]`);
      assert.equal(await row.getByTestId('maintenance-marker').innerText(), 'Unmounting');
      await page.goto(`${h.server.url}/#/datastore/${STORE}/summary`);
      const panel = page.getByTestId('maintenance-panel');
      await panel.getByText('maintenance: datastore is being unmounted').waitFor();
      await page.getByRole('link', { name: 'Content' }).click();
      await panel.waitFor();

      // the dialog offers the mode PBS set, checked, so that the operator can keep or reset it
      let dialog = await openMaintenanceDialog(page);
      assert.equal(await dialog.getByLabel('Unmounting').isChecked(), true);
      await dialog.getByLabel('None').check();
      await dialog.getByRole('button', { name: 'Save' }).click();
      await dialog.waitFor({ state: 'detached' });
      const cfg = await h.api<Record<string, unknown>>('GET', `/config/datastore/${STORE}`);
      assert.equal(cfg.body.data['maintenance-mode'], undefined);

      // set behind the page's back: from the list, which asks nothing maintenance refuses (a
      // datastore view open at that moment could not know and would be refused once)
      await page.goto(`${h.server.url}/#/`);
      await row.getByText('none').waitFor();
      await h.api('PUT', `/config/datastore/${STORE}`, { 'maintenance-mode': 's3-refresh,message="resync"' });
      await row.getByTestId('maintenance-marker').getByText('S3 refresh').waitFor();
      assert.equal(await row.getByTestId('maintenance-marker').innerText(), 'S3 refresh: resync');
      await page.goto(`${h.server.url}/#/datastore/${STORE}/summary`);
      await panel.getByText('maintenance: resync').waitFor();
      dialog = await openMaintenanceDialog(page);
      assert.equal(await dialog.getByLabel('S3 refresh').isChecked(), true);
      await dialog.getByRole('button', { name: 'Cancel' }).click();
      assert.deepEqual(unexpected(errors), []);
    } finally {
      await context.close();
      await h.api('PUT', `/config/datastore/${STORE}`, { delete: ['maintenance-mode'] });
    }
  });

  test('Sealed from the dialog: the list marks it, reads go on, the server refuses new data with the message', async () => {
    const { context, page, errors } = await h.newPage();
    try {
      await h.api('PUT', `/config/datastore/${STORE}`, { delete: ['maintenance-mode'] });
      await h.login(page);
      await page.goto(`${h.server.url}/#/datastore/${STORE}/options`);
      const dialog = await openMaintenanceDialog(page);
      await dialog.getByLabel('Sealed').check();
      await dialog.getByLabel(/^Message/).fill('retiring, prune only');
      await dialog.getByRole('button', { name: 'Save' }).click();
      await dialog.waitFor({ state: 'detached' });
      const cfg = await h.api<Record<string, unknown>>('GET', `/config/datastore/${STORE}`);
      assert.equal(cfg.body.data['maintenance-mode'], 'sealed,message="retiring, prune only"');

      await page.getByRole('link', { name: 'Datastores' }).first().click();
      const marker = page.locator(`tr[data-store="${STORE}"]`).getByTestId('maintenance-marker');
      await marker.getByText('Sealed').waitFor();
      assert.equal(await marker.innerText(), 'Sealed: retiring, prune only');
      // sealed admits reads: the summary shows usage, not a maintenance panel
      await page.goto(`${h.server.url}/#/datastore/${STORE}/summary`);
      await page.getByRole('heading', { name: 'Usage' }).waitFor();
      assert.equal(await page.getByTestId('maintenance-panel').count(), 0);
      const ns = await h.api('POST', `/admin/datastore/${STORE}/namespace`, { name: 'fresh' });
      assert.equal(ns.status, 503);
      assert.equal(
        ns.body.message,
        `datastore '${STORE}' is unavailable: sealed maintenance mode: retiring, prune only`,
      );
      assert.deepEqual(unexpected(errors), []);
    } finally {
      await context.close();
      await h.api('PUT', `/config/datastore/${STORE}`, { delete: ['maintenance-mode'] });
    }
  });

  test('an expired session returns to the login form with a notice, and logging out ends it', async () => {
    const { context, page, errors } = await h.newPage();
    try {
      await h.login(page);
      await context.clearCookies(); // as when the ticket expires: the server answers 401
      // the next request (a poll, or opening another page) is refused; either way the UI must notice
      await page.evaluate("location.hash = '#/tasks'");
      await page
        .getByTestId('login-notice')
        .getByText(/session has expired/)
        .waitFor();
      assert.deepEqual(unexpected(errors, [401]), []);

      await h.login(page);
      await page.getByRole('button', { name: 'Log out' }).click();
      await page.getByTestId('login-notice').getByText('You have logged out.').waitFor();
      assert.deepEqual(
        (await context.cookies()).filter((c) => c.name === 'PBSAuthCookie'),
        [],
        'the ticket cookie is gone',
      );
    } finally {
      await context.close();
    }
  });

  test('a scheduled garbage collection that hits maintenance shows as skipped in the jobs and tasks lists', async () => {
    const set = await h.api('PUT', `/config/datastore/${STORE}`, {
      'gc-schedule': 'daily',
      'maintenance-mode': 'offline,message="jobs test"',
    });
    assert.equal(set.status, 200, JSON.stringify(set.body));
    // the scheduler's first look records the job's creation; two days later it is due
    assert.equal(await runScheduledJob(h.server.context, gcJob(STORE, 'daily'), new Date()), undefined);
    const run = await runScheduledJob(
      h.server.context,
      gcJob(STORE, 'daily'),
      new Date(Date.now() + 2 * 86400_000),
    );
    assert.equal(run?.outcome, 'skipped');
    const { context, page, errors } = await h.newPage();
    try {
      await h.login(page);
      await page.getByRole('link', { name: 'Jobs' }).click();
      const gc = page.getByTestId('jobs-gc');
      const row = gc.locator('tr', { hasText: STORE });
      await row.getByText('skipped: maintenance: offline: jobs test').waitFor();
      assert.match(await row.innerText(), /daily/);
      await page.getByText('No prune jobs are scheduled.').waitFor();
      await page.getByText('No verify jobs are scheduled.').waitFor();
      await screenshot(page, 'jobs');

      await page.getByRole('link', { name: 'Tasks' }).click();
      const task = page.locator('table.tasks tr', { hasText: 'garbage_collection' });
      await task.getByText(/^skipped: maintenance: offline: jobs test/).waitFor();
      assert.deepEqual(unexpected(errors), []);
    } finally {
      await context.close();
      await h.api('PUT', `/config/datastore/${STORE}`, { delete: ['maintenance-mode', 'gc-schedule'] });
    }
  });
});
