/**
 * An in-process Stowage server on a random port in a temp dir, and a plain HTTPS client for it:
 * the certificate is accepted by pinning the fingerprint the server printed, each reply carries
 * the fingerprint it was served with. Plus the setup most API tests need: root's ticket, users
 * with ACL entries, and datastores that are quick to create.
 */
import type { LoginLimiterOptions } from '../../src/http/auth/login-limiter.js';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TLSSocket } from 'node:tls';
import {
  startServer,
  type RunningServer,
  type StartServerOptions as ServerOptions,
} from '../../src/server/server.js';
import type { ServerPaths } from '../../src/http/context.js';
import type { AnyRoute } from '../../src/http/route.js';
import type { ClusterSettings } from '../../src/cluster/cluster-settings.js';

export interface ApiReply {
  status: number;
  body: { data?: unknown; message?: string; errors?: Record<string, string>; [k: string]: unknown };
  headers: Record<string, string | string[] | undefined>;
  /** SHA-256 fingerprint of the certificate the reply came with. */
  fingerprint: string;
}

export interface Auth {
  ticket?: string;
  csrf?: string;
  /** `user@realm!name:secret` */
  token?: string;
  /** Send the ticket in the `__Host-` cookie instead. */
  hostCookie?: boolean;
}

export interface RequestOptions {
  auth?: Auth;
  /** Sent as JSON. */
  body?: unknown;
  /** Sent form-encoded, as the PBS web UI does. */
  form?: string;
}

export interface TestServer {
  dir: string;
  paths: ServerPaths;
  server: RunningServer;
  root: Auth;
  rootPassword: string;
  /** Lines the server announced (fingerprint, generated password). */
  announced: string[];
  /** One HTTPS request to `/api2/json<path>`; refuses a certificate other than the announced one. */
  api(method: string, path: string, opts?: RequestOptions): Promise<ApiReply>;
  login(username: string, password: string): Promise<Auth>;
  /** Create `userid` (realm pbs) with ACL entries `{path, role}` as root, and log it in. */
  addUser(userid: string, acl?: ReadonlyArray<{ path: string; role: string }>): Promise<Auth>;
  /**
   * A datastore in datastore.cfg with a bare chunk store (`.chunks/0000` and `.lock` only):
   * creating all 65536 chunk directories takes seconds here, and most tests store no chunk.
   */
  addBareDatastore(name: string, extra?: Record<string, string>): Promise<string>;
  close(): Promise<void>;
}

export interface StartTestServerOptions {
  prefix?: string;
  rootPassword?: string;
  nodeName?: string;
  /** Routes to serve; default all of `src/api2/index.ts` (the login route is needed for `root`). */
  routes?: readonly AnyRoute[];
  /** The login brake's settings (default: the server's). */
  loginLimit?: LoginLimiterOptions;
  /** Notification delivery timing (default: the server's, polling every second). */
  notifier?: ServerOptions['notifier'];
  /** Cluster mode on these etcd settings (default: none). */
  cluster?: ClusterSettings;
}

/** Start a server for one test file; `close()` stops it and removes the temp dir. */
export async function startTestServer(opts: StartTestServerOptions = {}): Promise<TestServer> {
  const dir = mkdtempSync(join(tmpdir(), opts.prefix ?? 'stowage-e2e-'));
  const rootPassword = opts.rootPassword ?? 'root-secret-1';
  const paths: ServerPaths = {
    configDir: join(dir, 'etc'),
    dataDir: join(dir, 'data'),
    runDir: join(dir, 'run'),
  };
  const announced: string[] = [];
  let server: RunningServer;
  try {
    server = await startServer({
      listen: { host: '127.0.0.1', port: 0 },
      paths,
      logger: false,
      announce: (line) => announced.push(line),
      rootPassword,
      authFailureDelayMs: 0,
      nodeName: opts.nodeName ?? 'testnode',
      ...(opts.routes && { routes: opts.routes }),
      ...(opts.loginLimit && { loginLimit: opts.loginLimit }),
      ...(opts.notifier && { notifier: opts.notifier }),
      ...(opts.cluster && { cluster: opts.cluster }),
    });
  } catch (err) {
    rmSync(dir, { recursive: true, force: true });
    throw err;
  }

  // No TLS session resumption: a resumed session shows no peer certificate, and every reply's
  // certificate is checked against the announced fingerprint.
  const agent = new HttpsAgent({ keepAlive: true, maxCachedSessions: 0 });
  const api = (method: string, path: string, o: RequestOptions = {}): Promise<ApiReply> => {
    const headers: Record<string, string> = {};
    const { auth } = o;
    if (auth?.ticket) {
      const cookie = auth.hostCookie ? '__Host-PBSAuthCookie' : 'PBSAuthCookie';
      headers.cookie = `${cookie}=${encodeURIComponent(auth.ticket)}`;
    }
    if (auth?.csrf) headers.CSRFPreventionToken = auth.csrf;
    if (auth?.token) headers.authorization = `PBSAPIToken ${auth.token}`;
    let payload: string | undefined;
    if (o.form !== undefined) {
      payload = o.form;
      headers['content-type'] = 'application/x-www-form-urlencoded';
    } else if (o.body !== undefined) {
      payload = JSON.stringify(o.body);
      headers['content-type'] = 'application/json';
    }
    // node sends a DELETE body neither chunked nor with a length unless told its length
    if (payload !== undefined) headers['content-length'] = String(Buffer.byteLength(payload));
    const url = new URL(`/api2/json${path}`, server.url);
    return new Promise((resolve, reject) => {
      const req = httpsRequest(url, { method, headers, rejectUnauthorized: false, agent }, (res) => {
        const fingerprint = (res.socket as TLSSocket).getPeerCertificate().fingerprint256.toLowerCase();
        if (fingerprint !== server.fingerprint) {
          res.destroy();
          reject(
            new Error(`certificate fingerprint ${fingerprint} is not the announced ${server.fingerprint}`),
          );
          return;
        }
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString();
          resolve({
            status: res.statusCode!,
            body: text ? (JSON.parse(text) as ApiReply['body']) : {},
            headers: res.headers,
            fingerprint,
          });
        });
      });
      req.on('error', reject);
      req.end(payload);
    });
  };

  const login = async (username: string, password: string): Promise<Auth> => {
    const res = await api('POST', '/access/ticket', { body: { username, password } });
    assert.equal(res.status, 200, `login of ${username}: ${JSON.stringify(res.body)}`);
    const data = res.body.data as { ticket: string; CSRFPreventionToken: string };
    return { ticket: data.ticket, csrf: data.CSRFPreventionToken };
  };

  const root = await login('root@pam', rootPassword);

  return {
    dir,
    paths,
    server,
    root,
    rootPassword,
    announced,
    api,
    login,
    async addUser(userid, acl = []) {
      const password = `pw-${userid.replace(/[^a-z0-9]/gi, '')}-1`;
      const created = await api('POST', '/access/users', { auth: root, body: { userid, password } });
      assert.equal(created.status, 200, `create ${userid}: ${JSON.stringify(created.body)}`);
      for (const { path, role } of acl) {
        const res = await api('PUT', '/access/acl', { auth: root, body: { path, role, 'auth-id': userid } });
        assert.equal(res.status, 200, `grant ${role} on ${path} to ${userid}: ${JSON.stringify(res.body)}`);
      }
      return login(userid, password);
    },
    async addBareDatastore(name, extra = {}) {
      const path = join(dir, 'stores', name);
      mkdirSync(join(path, '.chunks', '0000'), { recursive: true });
      writeFileSync(join(path, '.lock'), '');
      await server.context.datastores.config.update((stores) => {
        stores.set(name, { name, path, ...extra });
      });
      return path;
    },
    async close() {
      agent.destroy();
      await server.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/**
 * Wait for a task to end; returns its final status (`OK`, an error message, ...). Asks the
 * server's task manager in-process: fastify's default 100-character limit on URL parameters
 * refuses long UPIDs in `/nodes/{node}/tasks/{upid}/...` (reported for src/server/server.ts).
 */
export async function waitForTask(t: TestServer, upid: string, timeoutMs = 30_000): Promise<string> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new Error(`task ${upid} still running after ${timeoutMs} ms`)),
      timeoutMs,
    );
  });
  try {
    return await Promise.race([t.server.context.tasks.waitForTask(upid, 50), timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** The task's log lines (in-process, see waitForTask). */
export function taskLog(t: TestServer, upid: string): string[] {
  return t.server.context.tasks.readLog(upid, 0, 100_000).lines.map((l) => l.t);
}
