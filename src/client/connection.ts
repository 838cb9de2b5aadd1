/**
 * The client's connections to a Stowage (or PBS) server: TLS with certificate pinning, the REST
 * API over HTTPS, and the backup/reader protocols (HTTP/1.1 upgrade, then HTTP/2 on the same
 * TLS connection, reference §8.2).
 *
 * Certificate policy, as PBS's client: a certificate the system trusts is accepted; otherwise its
 * SHA-256 fingerprint must match the pinned one, and an unknown one is offered to `onUnknown`
 * (the CLI asks on a TTY and remembers the answer). Credentials are only sent after that check:
 * the TLS socket is verified first and then handed to the HTTP layer.
 */
import { request as httpRequest } from 'node:http';
import { destroyHttp2Session } from '../sys/http2-destroy.js';
import http2, { type ClientHttp2Session } from 'node:http2';
import tls, { type TLSSocket } from 'node:tls';
import type { BackupType } from '../api-types/names.js';
import {
  ERR_CONNECT_FAILED,
  ERR_CONNECTION_CLOSED,
  ERR_H2_HANDSHAKE,
  ERR_PROTOCOL_REQUEST_FAILED,
  ERR_REQUEST_FAILED,
  ERR_RESPONSE_HEAD_TOO_LARGE,
  ERR_UNEXPECTED_ANSWER,
  ERR_UPGRADE_CLOSED,
  ERR_UPGRADE_UNEXPECTED,
  ERROR_CODE_HEADER,
  type ErrorCode,
  isErrorCode,
  StowageError,
} from '../errors.js';

export interface ServerTarget {
  host: string;
  port: number;
}

export interface TlsPolicy {
  /** Pinned fingerprint, `aa:bb:...` (any case). */
  fingerprint?: string;
  /** Asked about an untrusted certificate whose fingerprint is not pinned; true accepts it. */
  onUnknown?: (fingerprint: string) => Promise<boolean>;
}

/** Credentials as the server expects them (reference §8.1). */
export type Credentials =
  { kind: 'ticket'; ticket: string; csrf?: string } | { kind: 'token'; tokenId: string; secret: string };

/** The server's certificate is not trusted (fingerprint unknown or different from the pinned one). */
export class CertificateError extends StowageError {
  constructor(message: string) {
    super('UNAUTHORIZED', message);
  }
}

export function normalizeFingerprint(fp: string): string {
  return fp.trim().toLowerCase();
}

const BY_STATUS: Record<number, ErrorCode> = {
  400: 'BAD_REQUEST',
  401: 'UNAUTHORIZED',
  403: 'FORBIDDEN',
  404: 'NOT_FOUND',
  409: 'CONFLICT',
  // PBS answers a datastore in maintenance with 503 (reference §1); so does Stowage.
  503: 'MAINTENANCE',
  504: 'TIMEOUT',
};

/**
 * The server's error as a StowageError: the envelope's `message` (or the whole body, as PBS and
 * Stowage send errors on the backup and reader protocols), and the code from the envelope's
 * `code` or the `x-stowage-error-code` header when the server sends one, else from the status.
 */
export function errorFromResponse(status: number, body: Buffer | string, codeHeader?: string): StowageError {
  const text = body.toString();
  let message = text.trim();
  let code: ErrorCode | undefined = isErrorCode(codeHeader) ? codeHeader : undefined;
  try {
    const json = JSON.parse(text) as { message?: unknown; code?: unknown };
    if (typeof json === 'object' && json !== null) {
      if (typeof json.message === 'string') message = json.message;
      if (isErrorCode(json.code)) code = json.code;
    }
  } catch {
    // a bare message (the protocols)
  }
  if (!message) message = `server answered HTTP ${status}`;
  return new StowageError(code ?? BY_STATUS[status] ?? 'INTERNAL', message.trim());
}

/** Open a TLS connection and check the server certificate against the policy. */
export async function connectTls(target: ServerTarget, policy: TlsPolicy): Promise<TLSSocket> {
  const socket = await new Promise<TLSSocket>((resolve, reject) => {
    const s = tls.connect({
      host: target.host,
      port: target.port,
      servername: /^[0-9.:]+$/.test(target.host) ? undefined : target.host,
      rejectUnauthorized: false,
    });
    s.once('secureConnect', () => resolve(s));
    s.once('error', (err: NodeJS.ErrnoException) =>
      reject(ERR_CONNECT_FAILED.withOptions({ cause: err }, target.host, target.port, err.message)),
    );
  });
  const fp = normalizeFingerprint(socket.getPeerCertificate().fingerprint256 ?? '');
  if (socket.authorized) return socket;
  if (policy.fingerprint && normalizeFingerprint(policy.fingerprint) === fp) return socket;
  if (policy.fingerprint) {
    socket.destroy();
    throw new CertificateError(
      `server certificate fingerprint ${fp} does not match the expected fingerprint ${normalizeFingerprint(policy.fingerprint)}`,
    );
  }
  if (policy.onUnknown && (await policy.onUnknown(fp))) return socket;
  socket.destroy();
  throw new CertificateError(
    `server certificate is not trusted and its fingerprint ${fp} is not known - ` +
      'set STOWAGE_FINGERPRINT (or PBS_FINGERPRINT) to it, or run the command on a terminal to confirm it',
  );
}

export function authHeaders(creds: Credentials | undefined, method: string): Record<string, string> {
  if (!creds) return {};
  if (creds.kind === 'token')
    return { authorization: `PBSAPIToken ${creds.tokenId}:${encodeURIComponent(creds.secret)}` };
  const h: Record<string, string> = { cookie: `PBSAuthCookie=${encodeURIComponent(creds.ticket)}` };
  if (method !== 'GET' && creds.csrf) h.csrfpreventiontoken = creds.csrf;
  return h;
}

/** URL and JSON body of a REST call: parameters in the query for GET and DELETE, else the body. */
export function apiRequest(
  method: 'GET' | 'POST' | 'PUT' | 'DELETE',
  path: string,
  params?: Record<string, unknown>,
): { url: string; body?: string } {
  let url = `/api2/json${path}`;
  const clean = Object.fromEntries(Object.entries(params ?? {}).filter(([, v]) => v !== undefined));
  if (method === 'GET' || method === 'DELETE') {
    const qs = new URLSearchParams(clean as Record<string, string>).toString();
    if (qs) url += `?${qs}`;
    return { url };
  }
  return { url, body: JSON.stringify(clean) };
}

/** `data` of a REST reply, or the server's error. */
export function apiReplyData<T>(status: number, text: Buffer | string): T {
  if (status >= 400) throw errorFromResponse(status, text);
  try {
    return (JSON.parse(text.toString()) as { data: T }).data;
  } catch {
    throw ERR_UNEXPECTED_ANSWER(text.toString().slice(0, 200));
  }
}

/** A REST client for `/api2/json`. One TLS connection per request (the CLI makes a handful). */
export class ApiClient {
  constructor(
    readonly target: ServerTarget,
    readonly policy: TlsPolicy,
    public credentials?: Credentials,
  ) {}

  /** Call `method /api2/json<path>`; returns `data` of the envelope, or throws the server's error. */
  async call<T = unknown>(
    method: 'GET' | 'POST' | 'PUT' | 'DELETE',
    path: string,
    params?: Record<string, unknown>,
  ): Promise<T> {
    const socket = await connectTls(this.target, this.policy);
    const { url, body } = apiRequest(method, path, params);
    const headers: Record<string, string> = {
      ...authHeaders(this.credentials, method),
      host: this.target.host,
    };
    if (body !== undefined) headers['content-type'] = 'application/json';
    return new Promise<T>((resolve, reject) => {
      const req = httpRequest({ method, path: url, headers, createConnection: () => socket }, (res) => {
        const parts: Buffer[] = [];
        res.on('data', (d: Buffer) => parts.push(d));
        res.on('end', () => {
          try {
            resolve(apiReplyData<T>(res.statusCode ?? 500, Buffer.concat(parts)));
          } catch (err) {
            reject(err);
          }
        });
        res.on('error', reject);
      });
      req.on('error', (err) => reject(ERR_REQUEST_FAILED(err.message)));
      req.end(body);
    });
  }
}

/** A backup or reader protocol session: HTTP/2 requests on the upgraded connection. */
export class ProtocolSession {
  private closedErr: Error | undefined;

  constructor(readonly h2: ClientHttp2Session) {
    h2.on('error', () => (this.closedErr ??= ERR_CONNECTION_CLOSED()));
    h2.on('close', () => (this.closedErr ??= ERR_CONNECTION_CLOSED()));
  }

  /**
   * One request; resolves with the raw body on 2xx, rejects with the server's error otherwise.
   * `query` values are URL-encoded as PBS's client does.
   */
  request(
    method: 'GET' | 'POST' | 'PUT',
    name: string,
    query: Record<string, string | number | undefined> = {},
    body?: Buffer | string,
    contentType = 'application/octet-stream',
  ): Promise<Buffer> {
    if (this.closedErr) return Promise.reject(this.closedErr);
    const qs = new URLSearchParams(
      Object.entries(query)
        .filter(([, v]) => v !== undefined)
        .map(([k, v]): [string, string] => [k, String(v)]),
    ).toString();
    return new Promise((resolve, reject) => {
      let stream: http2.ClientHttp2Stream;
      try {
        stream = this.h2.request({
          ':method': method,
          ':path': `/${name}${qs ? `?${qs}` : ''}`,
          ...(body !== undefined ? { 'content-type': contentType } : {}),
        });
      } catch (err) {
        return reject(ERR_PROTOCOL_REQUEST_FAILED(name, (err as Error).message));
      }
      let status = 0;
      let codeHeader: string | undefined;
      const parts: Buffer[] = [];
      stream.on('response', (h) => {
        status = Number(h[':status'] ?? 0);
        const c = h[ERROR_CODE_HEADER];
        codeHeader = typeof c === 'string' ? c : undefined;
      });
      stream.on('data', (d: Buffer) => parts.push(d));
      let settled = false;
      const settle = (fn: () => void) => {
        if (settled) return;
        settled = true;
        fn();
      };
      // the connection went away under the stream, or the server reset the stream unanswered
      const unanswered = () =>
        this.h2.destroyed || this.h2.closed || this.closedErr
          ? (this.closedErr ?? ERR_CONNECTION_CLOSED())
          : ERR_PROTOCOL_REQUEST_FAILED(name, 'the server closed the request without an answer');
      stream.on('end', () => {
        const data = parts.length === 1 ? parts[0]! : Buffer.concat(parts);
        if (status === 0) settle(() => reject(unanswered()));
        else if (status >= 200 && status < 300) settle(() => resolve(data));
        else settle(() => reject(errorFromResponse(status, data, codeHeader)));
      });
      stream.on('error', (err) =>
        settle(() =>
          reject(
            this.h2.destroyed || this.h2.closed
              ? ERR_CONNECTION_CLOSED()
              : ERR_PROTOCOL_REQUEST_FAILED(name, err.message),
          ),
        ),
      );
      // a reset without an error emits neither 'end' nor 'error'
      stream.on('close', () => settle(() => reject(unanswered())));
      stream.end(body);
    });
  }

  /** A request whose answer is `{"data": ...}`. */
  async json<T = unknown>(
    method: 'GET' | 'POST' | 'PUT',
    name: string,
    query: Record<string, string | number | undefined> = {},
    body?: unknown,
  ): Promise<T> {
    const raw = await this.request(
      method,
      name,
      query,
      body === undefined ? undefined : JSON.stringify(body),
      'application/json',
    );
    return (JSON.parse(raw.toString()) as { data: T }).data;
  }

  /** Close gracefully (waits for open streams). */
  close(): Promise<void> {
    return new Promise((resolve) => {
      if (this.h2.closed || this.h2.destroyed) return resolve();
      this.h2.close(() => resolve());
    });
  }

  /**
   * Drop the connection (the server removes an unfinished backup), on the next turn of the event
   * loop: this is often called from a failed request's handler (sys/http2-destroy.ts).
   */
  destroy(): void {
    destroyHttp2Session(this.h2);
  }
}

/** Read the HTTP/1.1 response head (and whatever followed it) off a socket. */
function readResponseHead(
  socket: TLSSocket,
): Promise<{ status: number; headers: Map<string, string>; rest: Buffer }> {
  return new Promise((resolve, reject) => {
    let buf = Buffer.alloc(0);
    const onData = (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      const end = buf.indexOf('\r\n\r\n');
      if (end < 0) {
        if (buf.length > 64 * 1024) fail(ERR_RESPONSE_HEAD_TOO_LARGE());
        return;
      }
      cleanup();
      socket.pause();
      const lines = buf.subarray(0, end).toString('latin1').split('\r\n');
      const m = /^HTTP\/1\.[01] (\d{3})/.exec(lines[0] ?? '');
      if (!m) return reject(ERR_UPGRADE_UNEXPECTED(lines[0] ?? ''));
      const headers = new Map<string, string>();
      for (const l of lines.slice(1)) {
        const i = l.indexOf(':');
        if (i > 0) headers.set(l.slice(0, i).trim().toLowerCase(), l.slice(i + 1).trim());
      }
      resolve({ status: Number(m[1]), headers, rest: buf.subarray(end + 4) });
    };
    const onEnd = () => fail(ERR_UPGRADE_CLOSED());
    const fail = (err: Error) => {
      cleanup();
      reject(err);
    };
    const cleanup = () => {
      socket.off('data', onData);
      socket.off('end', onEnd);
      socket.off('error', fail);
    };
    socket.on('data', onData);
    socket.on('end', onEnd);
    socket.on('error', fail);
  });
}

function readBody(socket: TLSSocket, first: Buffer, length: number): Promise<Buffer> {
  return new Promise((resolve) => {
    const parts = [first];
    let size = first.length;
    if (size >= length) return resolve(first.subarray(0, length));
    socket.on('data', (d: Buffer) => {
      parts.push(d);
      size += d.length;
      if (size >= length) resolve(Buffer.concat(parts).subarray(0, length));
    });
    socket.on('end', () => resolve(Buffer.concat(parts)));
    socket.resume();
  });
}

/** PBS's HTTP/2 settings: 32 MiB windows (reference §8.2). */
const WINDOW = 32 * 1024 * 1024;

/**
 * Open a backup or reader session: `GET path?query` with `Upgrade: protocol` on a verified TLS
 * connection; on `101` speak HTTP/2 on it, otherwise throw the server's error (e.g. the 503 of a
 * datastore in maintenance, with its message).
 */
export async function openProtocolSession(opts: {
  target: ServerTarget;
  policy: TlsPolicy;
  credentials?: Credentials;
  path: string;
  protocol: string;
  query: Record<string, string | number | undefined>;
}): Promise<ProtocolSession> {
  const socket = await connectTls(opts.target, opts.policy);
  const qs = new URLSearchParams(
    Object.entries(opts.query)
      .filter(([, v]) => v !== undefined)
      .map(([k, v]): [string, string] => [k, String(v)]),
  ).toString();
  const headers = {
    host: opts.target.host,
    connection: 'upgrade',
    upgrade: opts.protocol,
    ...authHeaders(opts.credentials, 'GET'),
  };
  const head =
    `GET ${opts.path}?${qs} HTTP/1.1\r\n` +
    Object.entries(headers)
      .map(([k, v]) => `${k}: ${v}\r\n`)
      .join('') +
    '\r\n';
  socket.write(head);
  const res = await readResponseHead(socket);
  if (res.status !== 101) {
    const len = Number(res.headers.get('content-length') ?? '0');
    const body = await readBody(socket, res.rest, len);
    socket.destroy();
    throw errorFromResponse(res.status, body, res.headers.get(ERROR_CODE_HEADER));
  }
  if (res.rest.length > 0) socket.unshift(res.rest);
  const h2 = http2.connect(`https://${opts.target.host}:${opts.target.port}`, {
    createConnection: () => socket,
    settings: { initialWindowSize: WINDOW, maxFrameSize: 4 * 1024 * 1024 },
    // Several 4 MiB chunks are in flight at once; Node's 10 MB default would make nghttp2
    // refuse streams (ENHANCE_YOUR_CALM).
    maxSessionMemory: 256,
  });
  await new Promise<void>((resolve, reject) => {
    h2.once('connect', () => resolve());
    h2.once('error', (err) => reject(ERR_H2_HANDSHAKE(err.message)));
  });
  h2.setLocalWindowSize(WINDOW);
  return new ProtocolSession(h2);
}

/** One snapshot on one server: what a backup or a reader session is opened on. */
export interface SnapshotSessionTarget {
  target: ServerTarget;
  policy: TlsPolicy;
  credentials?: Credentials;
  store: string;
  ns?: string;
  backupType: BackupType;
  backupId: string;
  /** Epoch seconds. */
  backupTime: number;
}

/**
 * Open a backup (`/api2/json/backup`) or reader (`/api2/json/reader`) session on `snapshot`,
 * with the query parameters PBS's client sends (reference §8.2, §8.3); the root namespace is
 * sent as no `ns` at all.
 */
export function openSnapshotSession(
  snapshot: SnapshotSessionTarget,
  path: string,
  protocol: string,
): Promise<ProtocolSession> {
  return openProtocolSession({
    target: snapshot.target,
    policy: snapshot.policy,
    credentials: snapshot.credentials,
    path,
    protocol,
    query: {
      store: snapshot.store,
      ns: snapshot.ns || undefined,
      'backup-type': snapshot.backupType,
      'backup-id': snapshot.backupId,
      'backup-time': snapshot.backupTime,
    },
  });
}
