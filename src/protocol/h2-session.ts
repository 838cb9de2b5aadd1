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
import type { Static, TSchema } from 'typebox';
import { BadRequestError, ProtocolHttpError, isStowageError } from '../errors.js';
import { protocolErrorResponse } from '../http/error-envelope.js';
import { MAX_PARAMETER_BODY, checkParams, queryParams, requestParams } from '../http/parameters.js';
import { chunkBuffers } from '../sys/buffer-pool.js';

/** PBS: initial stream and connection windows of 32 MiB, frames up to 4 MiB (reference §8.2). */
export const H2_WINDOW_SIZE = 32 * 1024 * 1024;
export const H2_MAX_FRAME_SIZE = 4 * 1024 * 1024;
/** Megabytes of buffered stream data a session may hold (chunk uploads and downloads in flight). */
export const H2_MAX_SESSION_MEMORY_MB = 256;

/** Answer an HTTP/1.1 request that will not be upgraded, as PBS answers a protocol error, and close. */
export function writeHttp1Error(socket: Duplex, err: unknown): void {
  const res = protocolErrorResponse(err);
  const head =
    `HTTP/1.1 ${res.status} ${STATUS_CODES[res.status] ?? 'Error'}\r\n` +
    Object.entries(res.headers)
      .map(([k, v]) => `${k}: ${v}\r\n`)
      .join('') +
    `content-length: ${res.body.length}\r\n` +
    'connection: close\r\n\r\n';
  if (socket.destroyed) return;
  socket.end(Buffer.concat([Buffer.from(head), res.body]));
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
  /**
   * An upload of `size` bytes (a chunk), read into this thread's pooled memory (`chunkBuffers`;
   * give it back when done). Refused as `body` is beyond `size`; may be shorter (check it).
   */
  upload(size: number): Promise<Buffer>;
}

/**
 * A handler's raw answer (downloads): bytes sent as they are. `release` runs once the stream is
 * closed and nothing reads `data` any more (pooled memory goes back to its pool).
 */
export class RawReply {
  constructor(
    readonly data: Buffer,
    readonly contentType = 'application/octet-stream',
    readonly release?: () => void,
  ) {}
}

/**
 * One endpoint of a protocol session, PBS's `ApiMethod`: its parameter schema beside its handler.
 * `body` says where the parameters come from (`src/http/parameters.ts`):
 * - `'parameters'`: the query and a JSON or form body (PBS's Sync/Async handlers: `dynamic_index`,
 *   `dynamic_close`, `fixed_index`, `fixed_close`, the appends, `finish`, ...);
 * - `'data'`: the query only; the body is the upload (PBS's AsyncHttp handlers: `blob`,
 *   `dynamic_chunk`, `fixed_chunk`, `speedtest`) or there is none (the downloads `previous`,
 *   `download`, `chunk`).
 */
export interface H2Route<S extends TSchema = TSchema> {
  params: S;
  body: 'parameters' | 'data';
  handler(params: Static<S>, req: H2Request): Promise<unknown>;
}

/** Declare an endpoint: PBS's schema, where its parameters come from, the handler. */
export function h2Route<S extends TSchema>(
  params: S,
  body: H2Route['body'],
  handler: H2Route<S>['handler'],
): H2Route<S> {
  return { params, body, handler };
}

/** `"METHOD name"` → endpoint. */
export type H2Routes = ReadonlyMap<string, H2Route>;

/**
 * Read the request body, at most `limit` bytes: into `into` when given (its length is the
 * limit), otherwise into a buffer of its own.
 */
function readBody(stream: ServerHttp2Stream, limit: number, into?: Buffer): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const parts: Buffer[] = [];
    let size = 0;
    stream.on('data', (d: Buffer) => {
      if (size + d.length > limit) {
        stream.removeAllListeners('data');
        reject(new BadRequestError(`request body too large (more than ${limit} bytes)`));
        stream.resume();
        return;
      }
      if (into) d.copy(into, size);
      else parts.push(d);
      size += d.length;
    });
    stream.once('end', () => {
      if (into) resolve(into.subarray(0, size));
      else resolve(parts.length === 1 ? parts[0]! : Buffer.concat(parts, size));
    });
    stream.once('error', reject);
  });
}

function respond(
  stream: ServerHttp2Stream,
  status: number,
  headers: Record<string, string>,
  body: Buffer,
): void {
  if (stream.destroyed || stream.closed) return;
  try {
    stream.respond({ ':status': status, ...headers, 'content-length': body.length });
    stream.end(body);
  } catch {
    // the peer reset the stream; nothing to answer
  }
}

/** The endpoint's parameters, read from where PBS reads them and checked against its schema. */
async function routeParams(route: H2Route, req: H2Request): Promise<unknown> {
  if (route.body === 'data') return checkParams(route.params, queryParams(req.query));
  const body = await req.body(MAX_PARAMETER_BODY);
  const ct = req.headers['content-type'];
  return checkParams(route.params, requestParams(typeof ct === 'string' ? ct : undefined, body, req.query));
}

/**
 * Serve `routes` on an HTTP/2 session. `onError` sees every failed request (for the task log).
 * Answers are `{"data": ...}` JSON or raw bytes; errors as PBS sends them (`protocolErrorResponse`).
 */
export function serveRoutes(
  session: Http2Session,
  routes: H2Routes,
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
      upload: (size) => readBody(stream, size, chunkBuffers.take(size)),
    };
    const route = routes.get(`${method} ${name}`);
    const run = route
      ? routeParams(route, req).then((params) => route.handler(params, req))
      : Promise.reject(new ProtocolHttpError('NOT_FOUND', `Path '/${name}' not found.`));
    run.then(
      (result) => {
        if (result instanceof RawReply) {
          if (result.release) {
            if (stream.closed || stream.destroyed) result.release();
            else stream.once('close', result.release);
          }
          respond(stream, 200, { 'content-type': result.contentType }, result.data);
        } else {
          const json = Buffer.from(JSON.stringify({ data: result ?? null }));
          respond(stream, 200, { 'content-type': 'application/json' }, json);
        }
        if (!stream.readableEnded) stream.resume();
      },
      (err: unknown) => {
        onError({ method, name }, err);
        const res = protocolErrorResponse(err);
        respond(stream, res.status, res.headers, res.body);
        if (!stream.readableEnded) stream.resume();
      },
    );
  });
}

export function errorMessage(err: unknown): string {
  return isStowageError(err) || err instanceof Error ? err.message : String(err);
}
