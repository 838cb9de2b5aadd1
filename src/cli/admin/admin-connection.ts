/**
 * How the admin CLI reaches the running server. Like `proxmox-backup-manager`, it is meant for
 * root on the server host: it reads the server's signing key from the config dir, signs a
 * short-lived `root@pam` ticket itself and pins the server's own certificate, so no password
 * prompt is needed and a user without access to the config dir cannot use it.
 * `--server HOST:PORT` (or STOWAGE_SERVER) points it at another listen address.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ApiClient } from '../../client/connection.js';
import { resolvePaths, type StowagePaths } from '../../config/paths.js';
import { ERR_NO_SERVER_CONFIG, ERR_SERVER_SPEC_BAD_PORT, ERR_SERVER_SPEC_INVALID } from '../../errors.js';
import { loadOrCreateAuthKeys } from '../../http/auth/auth-keys.js';
import { createCsrfToken } from '../../http/auth/csrf.js';
import { createTicket } from '../../http/auth/ticket.js';
import { certFingerprint } from '../../http/tls.js';

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

/** An API client authenticated as root@pam with a ticket signed by the local server key. */
export async function adminClient(opts: GlobalOptions): Promise<ApiClient> {
  const paths = adminPaths(opts);
  const certPath = join(paths.configDir, 'proxy.pem');
  if (!existsSync(join(paths.configDir, 'authkey.key')) || !existsSync(certPath)) {
    throw ERR_NO_SERVER_CONFIG(paths.configDir);
  }
  const keys = await loadOrCreateAuthKeys(paths.configDir);
  const ticket = createTicket(keys.privateKey, 'root@pam');
  const target = parseHostPort(opts.server ?? process.env.STOWAGE_SERVER ?? DEFAULT_SERVER);
  return new ApiClient(
    target,
    { fingerprint: certFingerprint(readFileSync(certPath)) },
    { kind: 'ticket', ticket, csrf: createCsrfToken(keys.csrfSecret, 'root@pam') },
  );
}
