/**
 * How the admin CLI reaches the running server. Like `proxmox-backup-manager`, it is meant for
 * root on the server host: it reads the server's signing key from the config dir, signs a
 * short-lived `root@pam` ticket itself and pins the server's own certificate, so no password
 * prompt is needed and a user without access to the config dir cannot use it.
 * `--server HOST:PORT` (or STOWAGE_SERVER) points it at another listen address.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  ApiClient,
  apiReplyData,
  apiRequest,
  authHeaders,
  type Credentials,
} from '../../client/connection.js';
import { resolvePaths, type StowagePaths } from '../../config/paths.js';
import {
  ERR_CONNECT_FAILED,
  ERR_NO_SERVER_CONFIG,
  ERR_SERVER_SPEC_BAD_PORT,
  ERR_SERVER_SPEC_INVALID,
} from '../../errors.js';
import { loadOrCreateAuthKeys } from '../../http/auth/auth-keys.js';
import { createCsrfToken } from '../../http/auth/csrf.js';
import { createTicket } from '../../http/auth/ticket.js';
import { certFingerprint } from '../../http/tls.js';
import { openInProcessApi, type InProcessApi } from '../../server/in-process-api.js';

export const DEFAULT_SERVER = 'localhost:8007';

export interface GlobalOptions {
  server?: string;
  configDir?: string;
  outputFormat?: 'text' | 'json' | 'json-pretty';
}

export function adminPaths(opts: GlobalOptions): StowagePaths {
  return resolvePaths(opts.configDir ? { configDir: opts.configDir } : {});
}

export function parseHostPort(spec: string): { host: string; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:]+))(?::(\d+))?$/.exec(spec);
  if (!m) throw ERR_SERVER_SPEC_INVALID(spec);
  const port = m[3] ? Number(m[3]) : 8007;
  if (port < 1 || port > 65535) throw ERR_SERVER_SPEC_BAD_PORT(spec);
  return { host: m[1] ?? m[2]!, port };
}

/** What the admin commands call: `/api2/json` with the envelope's `data` back. */
export interface AdminApi {
  call<T = unknown>(
    method: 'GET' | 'POST' | 'PUT' | 'DELETE',
    path: string,
    params?: Record<string, unknown>,
  ): Promise<T>;
}

/** In-process APIs opened by this CLI run, closed (their tasks awaited) before it exits. */
const inProcess = new Set<InProcessApi>();

export async function closeInProcessApis(): Promise<void> {
  for (const api of inProcess) await api.close();
  inProcess.clear();
}

/**
 * The running server when there is one; when nothing listens at a local address (the server is
 * stopped), the API in this process, as `proxmox-backup-manager` works (defect: every command
 * failed with ECONNREFUSED). A stopped server's datastore can so be put offline before it starts;
 * locks, admission and the operation registry are the same, so a server started meanwhile and
 * this process exclude each other as two servers would.
 */
class AdminClient implements AdminApi {
  private local: InProcessApi | undefined;

  constructor(
    private readonly remote: ApiClient,
    private readonly paths: StowagePaths,
    private readonly credentials: Credentials,
    private readonly mayWorkLocally: boolean,
  ) {}

  async call<T = unknown>(
    method: 'GET' | 'POST' | 'PUT' | 'DELETE',
    path: string,
    params?: Record<string, unknown>,
  ): Promise<T> {
    if (!this.local) {
      try {
        return await this.remote.call<T>(method, path, params);
      } catch (err) {
        if (!this.mayWorkLocally || !connectionRefused(err)) throw err;
        process.stderr.write('note: no server is running here; working on the configuration directly\n');
        this.local = await openInProcessApi(this.paths);
        inProcess.add(this.local);
      }
    }
    const { url, body } = apiRequest(method, path, params);
    const headers: Record<string, string> = { ...authHeaders(this.credentials, method), host: 'localhost' };
    if (body !== undefined) headers['content-type'] = 'application/json';
    const res = await this.local.request(method, url, headers, body);
    return apiReplyData<T>(res.status, res.body);
  }
}

function connectionRefused(err: unknown): boolean {
  return (
    ERR_CONNECT_FAILED.is(err) && (err.cause as NodeJS.ErrnoException | undefined)?.code === 'ECONNREFUSED'
  );
}

function isLocalHost(host: string): boolean {
  return host === 'localhost' || host === '::1' || /^127\.\d+\.\d+\.\d+$/.test(host);
}

/** A client authenticated as root@pam with a ticket signed by the local server key. */
export async function adminClient(opts: GlobalOptions): Promise<AdminApi> {
  const paths = adminPaths(opts);
  const certPath = join(paths.configDir, 'proxy.pem');
  if (!existsSync(join(paths.configDir, 'authkey.key')) || !existsSync(certPath)) {
    throw ERR_NO_SERVER_CONFIG(paths.configDir);
  }
  const keys = await loadOrCreateAuthKeys(paths.configDir);
  const ticket = createTicket(keys.privateKey, 'root@pam');
  const target = parseHostPort(opts.server ?? process.env.STOWAGE_SERVER ?? DEFAULT_SERVER);
  const credentials: Credentials = {
    kind: 'ticket',
    ticket,
    csrf: createCsrfToken(keys.csrfSecret, 'root@pam'),
  };
  const remote = new ApiClient(target, { fingerprint: certFingerprint(readFileSync(certPath)) }, credentials);
  return new AdminClient(remote, paths, credentials, isLocalHost(target.host));
}
