/**
 * Shared setup for the browser tests: a real HTTPS server in temp dirs, a small API client, the
 * built UI, and Debian's Chromium driven by playwright-core (never a downloaded browser).
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, statSync } from 'node:fs';
import { request as httpsRequest } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium, type Browser, type BrowserContext, type ConsoleMessage, type Page } from 'playwright-core';
import type { StowagePaths } from '../../src/config/paths.js';
import { startServer, type RunningServer } from '../../src/server/server.js';
import type { ClusterSettings } from '../../src/cluster/cluster-settings.js';

export const CHROMIUM = '/usr/bin/chromium';
export const ROOT_PASSWORD = 'browser-root-secret';
export const REPO = fileURLToPath(new URL('../../', import.meta.url));
export const SCREENSHOTS = join(REPO, 'docs', 'screenshots');

/**
 * Why the browser tests cannot run here, or undefined when they can. In CI (`.ci/run` installs
 * chromium) a missing browser is an error, not a skip, so the UI cannot go untested unnoticed.
 */
export function browserSkipReason(): string | undefined {
  if (existsSync(CHROMIUM)) return undefined;
  if (process.env.CI === 'true') {
    throw new Error(`${CHROMIUM} is missing in CI: .ci/run should have installed Debian's chromium package`);
  }
  return `${CHROMIUM} not found: install it with 'apt-get install -y chromium' to run the browser tests`;
}

function newestMtime(dir: string): number {
  let newest = 0;
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    newest = Math.max(newest, e.isDirectory() ? newestMtime(p) : statSync(p).mtimeMs);
  }
  return newest;
}

/** Build www/dist unless it is newer than every UI source (`npm test` has built it already). */
export function ensureUiBuilt(): void {
  const index = join(REPO, 'www', 'dist', 'index.html');
  const sources = Math.max(
    newestMtime(join(REPO, 'www', 'src')),
    statSync(join(REPO, 'www', 'index.html')).mtimeMs,
  );
  if (existsSync(index) && statSync(index).mtimeMs >= sources) return;
  execFileSync('npm', ['run', '--silent', 'build:www'], { cwd: REPO, stdio: 'inherit' });
}

export interface Reply<T = unknown> {
  status: number;
  body: { data: T; message?: string; [k: string]: unknown };
}

export class Harness {
  readonly dir: string;
  readonly paths: StowagePaths;
  server!: RunningServer;
  browser!: Browser;
  private ticket = '';
  private csrf = '';

  constructor() {
    this.dir = mkdtempSync(join(tmpdir(), 'stowage-browser-'));
    this.paths = {
      configDir: join(this.dir, 'etc'),
      dataDir: join(this.dir, 'data'),
      runDir: join(this.dir, 'run'),
    };
  }

  /** `cluster`: a server of a cluster on these etcd settings (default: none). */
  async start(opts: { cluster?: ClusterSettings } = {}): Promise<void> {
    ensureUiBuilt();
    this.server = await startServer({
      ...(opts.cluster && { cluster: opts.cluster }),
      listen: { host: '127.0.0.1', port: 0 },
      paths: this.paths,
      logger: false,
      announce: () => {},
      rootPassword: ROOT_PASSWORD,
      authFailureDelayMs: 0,
      nodeName: 'browsertest',
    });
    const res = await this.api<{ ticket: string; CSRFPreventionToken: string }>('POST', '/access/ticket', {
      username: 'root@pam',
      password: ROOT_PASSWORD,
    });
    assert.equal(res.status, 200, JSON.stringify(res.body));
    this.ticket = res.body.data.ticket;
    this.csrf = res.body.data.CSRFPreventionToken;
    this.browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: [
        '--headless',
        '--no-sandbox',
        '--disable-gpu',
        '--disable-quic',
        '--no-first-run',
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync',
      ],
      // playwright refuses --user-data-dir here; launch() itself runs on a fresh temporary profile
    });
  }

  async stop(): Promise<void> {
    await this.browser?.close();
    await this.server?.close();
    rmSync(this.dir, { recursive: true, force: true });
  }

  /** One request as root@pam (the certificate is self-signed and accepted). */
  api<T = unknown>(method: string, path: string, body?: unknown): Promise<Reply<T>> {
    const headers: Record<string, string> = {};
    if (this.ticket) headers.cookie = `PBSAuthCookie=${encodeURIComponent(this.ticket)}`;
    if (this.csrf && method !== 'GET') headers.CSRFPreventionToken = this.csrf;
    if (body !== undefined) headers['content-type'] = 'application/json';
    const url = new URL(`/api2/json${path}`, this.server.url);
    return new Promise((resolve, reject) => {
      const req = httpsRequest(url, { method, headers, rejectUnauthorized: false }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString();
          resolve({ status: res.statusCode!, body: text ? JSON.parse(text) : {} });
        });
      });
      req.on('error', reject);
      req.end(body === undefined ? undefined : JSON.stringify(body));
    });
  }

  /**
   * Create a datastore through the API and wait for its create-datastore task; `fields` adds
   * parameters (an S3 `backend`).
   */
  async createDatastore(name: string, comment?: string, fields: Record<string, unknown> = {}): Promise<void> {
    const path = join(this.dir, 'stores', name);
    const res = await this.api<string>('POST', '/config/datastore', {
      name,
      path,
      ...(comment && { comment }),
      ...fields,
    });
    assert.equal(res.status, 200, JSON.stringify(res.body));
    const upid = res.body.data;
    for (let i = 0; i < 600; i++) {
      const st = await this.api<{ status: string; exitstatus?: string }>(
        'GET',
        `/nodes/localhost/tasks/${encodeURIComponent(upid)}/status`,
      );
      if (st.body.data.status === 'stopped') {
        assert.equal(st.body.data.exitstatus, 'OK', `create-datastore ${name}`);
        return;
      }
      await new Promise((r) => setTimeout(r, 100));
    }
    assert.fail(`create-datastore ${name} did not finish`);
  }

  /**
   * Environment for a real `stowage-client` (test/e2e/backup-helpers.ts runs it) backing up to
   * datastore `store` of this server as root@pam, the certificate pinned by its fingerprint.
   */
  clientEnv(store: string): NodeJS.ProcessEnv {
    const url = new URL(this.server.url);
    return {
      PATH: process.env.PATH,
      HOME: join(this.dir, 'client-home'),
      STOWAGE_REPOSITORY: `root@pam@${url.hostname}:${url.port}:${store}`,
      STOWAGE_PASSWORD: ROOT_PASSWORD,
      STOWAGE_FINGERPRINT: this.server.fingerprint,
    };
  }

  async newPage(
    viewport = { width: 1366, height: 860 },
  ): Promise<{ context: BrowserContext; page: Page; errors: string[] }> {
    const context = await this.browser.newContext({ ignoreHTTPSErrors: true, viewport, locale: 'en-GB' });
    context.setDefaultTimeout(15_000);
    const page = await context.newPage();
    const errors: string[] = [];
    page.on('console', (m: ConsoleMessage) => {
      if (m.type() === 'error') errors.push(m.text());
    });
    page.on('pageerror', (e) => errors.push(`page error: ${e.message}`));
    return { context, page, errors };
  }

  async login(page: Page): Promise<void> {
    await page.goto(this.server.url + '/');
    await page.getByLabel('User name').fill('root');
    await page.getByLabel('Realm').selectOption('pam');
    await page.getByLabel('Password').fill(ROOT_PASSWORD);
    await page.getByRole('button', { name: 'Log in' }).click();
    await page.getByRole('heading', { name: 'Datastores' }).waitFor();
  }
}

/**
 * Save a screenshot under docs/screenshots (referenced from docs/ui.md) when STOWAGE_SCREENSHOTS=1,
 * so ordinary test runs do not rewrite the committed pictures.
 */
export async function screenshot(page: Page, name: string, opts: { fullPage?: boolean } = {}): Promise<void> {
  if (process.env.STOWAGE_SCREENSHOTS !== '1') return;
  mkdirSync(SCREENSHOTS, { recursive: true });
  // the spinner animates: freeze it so screenshots are stable
  await page.addStyleTag({ content: '.spinner { animation: none !important; }' });
  await page.waitForTimeout(400); // let Pico's dialog open/close transitions finish
  await page.screenshot({ path: join(SCREENSHOTS, `${name}.png`), fullPage: opts.fullPage ?? false });
}
