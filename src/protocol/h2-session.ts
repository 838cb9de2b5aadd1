/**
 * The transport shared by the backup and reader protocols (reference §8.2, §8.3): an HTTP/1.1
 * `GET` with `Upgrade: <protocol>` that, once every check passed, is answered with
 * `101 Switching Protocols`, after which the same TLS connection speaks HTTP/2 with the server as
 * the HTTP/2 server. Before the upgrade, a refusal is a plain HTTP/1.1 response with the PBS
 * error envelope (so a maintenance refusal is a 503 with its message, never a 101).
 *
 * Inside HTTP/2 every endpoint is `METHOD /name?query`; answers are `{"data": ...}` JSON (or raw
 * bytes for downloads), errors the HTTP status of the StowageError with `{"data":null,"message"}`.
 */
import http2, { type Http2Session, type ServerHttp2Stream, type IncomingHttpHeaders } from 'node:http2';
import type { Duplex } from 'node:stream';
import { STATUS_CODES } from 'node:http';
import { BadRequestError, StowageError, isStowageError } from '../errors.js';
import { errorEnvelope } from '../server/error-envelope.js';

/** PBS: initial stream and connection windows of 32 MiB, frames up to 4 MiB (reference §8.2). */
export const H2_WINDOW_SIZE = 32 * 1024 * 1024;
export const H2_MAX_FRAME_SIZE = 4 * 1024 * 1024;
/** Megabytes of buffered stream data a session may hold (chunk uploads and downloads in flight). */
export const H2_MAX_SESSION_MEMORY_MB = 256;

/** Answer an HTTP/1.1 request that will not be upgraded, with the error envelope, and close. */
export function writeHttp1Error(socket: Duplex, err: unknown): void {
  const env = errorEnvelope(err);
  const body = Buffer.from(JSON.stringify(env.body));
  const head =
    `HTTP/1.1 ${env.status} ${STATUS_CODES[env.status] ?? 'Error'}\r\n` +
    'Content-Type: application/json;charset=UTF-8\r\n' +
    `Content-Length: ${body.length}\r\n` +
    'Connection: close\r\n\r\n';
  if (socket.destroyed) return;
  socket.end(Buffer.concat([Buffer.from(head), body]));
}

/**
 * Send `101 Switching Protocols` and start the HTTP/2 server session on the socket. The HTTP/2
 * handshake waits for the 101 to be flushed: handing a TLS socket with a write in flight to the
 * HTTP/2 core trips an assertion in Node 20.
 */
export function upgradeToHttp2(socket: Duplex, head: Buffer, protocol: string): Promise<Http2Session> {
  return new Promise((resolve, reject) => {
    if (head.length > 0) socket.unshift(head);
    socket.write(
      `HTTP/1.1 101 Switching Protocols\r\nUpgrade: ${protocol}\r\nConnection: upgrade\r\n\r\n`,
      (err) => {
        if (err) return reject(err);
        try {
          const session = http2.performServerHandshake(socket, {
            settings: { initialWindowSize: H2_WINDOW_SIZE, maxFrameSize: H2_MAX_FRAME_SIZE },
            // Node's default (10 MB) is less than a few 4 MiB chunks in flight; beyond it nghttp2
            // refuses new streams with ENHANCE_YOUR_CALM.
            maxSessionMemory: H2_MAX_SESSION_MEMORY_MB,
          });
          session.setLocalWindowSize(H2_WINDOW_SIZE);
          resolve(session);
        } catch (e) {
          reject(e);
        }
      },
    );
  });
}

/** One request inside the HTTP/2 session. */
export interface H2Request {
  method: string;
  /** Endpoint name without the leading `/`: `dynamic_chunk`. */
  name: string;
  query: URLSearchParams;
  headers: IncomingHttpHeaders;
  stream: ServerHttp2Stream;
  /** The whole body; refused with 413-class BadRequest beyond `limit` bytes. */
  body(limit: number): Promise<Buffer>;
}

/** A handler's raw answer (downloads): bytes sent as they are. */
export class RawReply {
  constructor(
    readonly data: Buffer,
    readonly contentType = 'application/octet-stream',
  ) {}
}

export type H2Handler = (req: H2Request) => Promise<unknown>;

function readBody(stream: ServerHttp2Stream, limit: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const parts: Buffer[] = [];
    let size = 0;
    stream.on('data', (d: Buffer) => {
      size += d.length;
      if (size > limit) {
        stream.removeAllListeners('data');
        reject(new BadRequestError(`request body too large (more than ${limit} bytes)`));
        stream.resume();
        return;
      }
      parts.push(d);
    });
    stream.once('end', () => resolve(parts.length === 1 ? parts[0]! : Buffer.concat(parts, size)));
    stream.once('error', reject);
  });
}

function respond(stream: ServerHttp2Stream, status: number, contentType: string, body: Buffer): void {
  if (stream.destroyed || stream.closed) return;
  try {
    stream.respond({ ':status': status, 'content-type': contentType, 'content-length': body.length });
    stream.end(body);
  } catch {
    // the peer reset the stream; nothing to answer
  }
}

/**
 * Serve `routes` (`"POST dynamic_chunk"` → handler) on an HTTP/2 session. `onError` sees every
 * failed request (for the task log).
 */
export function serveRoutes(
  session: Http2Session,
  routes: ReadonlyMap<string, H2Handler>,
  onError: (req: { method: string; name: string }, err: unknown) => void,
): void {
  session.on('stream', (stream: ServerHttp2Stream, headers: IncomingHttpHeaders) => {
    const method = String(headers[':method'] ?? 'GET');
    const url = new URL(String(headers[':path'] ?? '/'), 'http://session');
    const name = url.pathname.replace(/^\/+/, '');
    const req: H2Request = {
      method,
      name,
      query: url.searchParams,
      headers,
      stream,
      body: (limit) => readBody(stream, limit),
    };
    const handler = routes.get(`${method} ${name}`);
    const run = handler
      ? handler(req)
      : Promise.reject(new StowageError('NOT_FOUND', `no such path '${method} /${name}' in this protocol`));
    run.then(
      (result) => {
        if (result instanceof RawReply) respond(stream, 200, result.contentType, result.data);
        else respond(stream, 200, 'application/json', Buffer.from(JSON.stringify({ data: result ?? null })));
        if (!stream.readableEnded) stream.resume();
      },
      (err: unknown) => {
        onError({ method, name }, err);
        const env = errorEnvelope(err);
        respond(stream, env.status, 'application/json', Buffer.from(JSON.stringify(env.body)));
        if (!stream.readableEnded) stream.resume();
      },
    );
  });
}

/** A required query parameter, or BadRequestError naming it. */
export function requiredParam(q: URLSearchParams, name: string): string {
  const v = q.get(name);
  if (v === null || v === '')
    throw new BadRequestError(`parameter verification failed - '${name}': parameter is missing`);
  return v;
}

/** A non-negative integer parameter within `max`. */
export function intParam(
  q: URLSearchParams,
  name: string,
  opts: { max?: number; min?: number } = {},
): number {
  const raw = requiredParam(q, name);
  const n = Number(raw);
  const min = opts.min ?? 0;
  if (
    !/^[0-9]+$/.test(raw) ||
    !Number.isSafeInteger(n) ||
    n < min ||
    (opts.max !== undefined && n > opts.max)
  ) {
    const range = opts.max !== undefined ? ` (${min} - ${opts.max})` : '';
    throw new BadRequestError(`parameter verification failed - '${name}': value must be an integer${range}`);
  }
  return n;
}

export function errorMessage(err: unknown): string {
  return isStowageError(err) || err instanceof Error ? err.message : String(err);
}
