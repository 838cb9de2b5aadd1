/**
 * The one place Stowage makes an S3 client (`@aws-sdk/client-s3`, no hand-written signing) and
 * turns the SDK's failures into Stowage errors. The chunk backend and the endpoint check use it.
 *
 * Settings chosen for S3-compatible stores other than AWS (Ceph RGW, MinIO, Garage): the SDK's
 * default CRC32 "flexible checksums" with chunked trailers are not understood by every store
 * (Ceph 16's RGW answers them with errors), so checksums are sent only where the API requires
 * one; integrity is ours anyway (every chunk and blob carries a CRC and its digest, §7.2).
 */
import { Agent as HttpsAgent, type AgentOptions, type RequestOptions } from 'node:https';
import type { Duplex } from 'node:stream';
import { connect as tlsConnect, type ConnectionOptions } from 'node:tls';
import {
  DeleteObjectCommand,
  S3Client,
  S3ServiceException,
  type DeleteObjectsCommandInput,
  type DeleteObjectsCommandOutput,
  type _Error as S3DeleteError,
} from '@aws-sdk/client-s3';
import { parseHumanByte } from '../api-types/human-byte.js';
import type { ProviderQuirk, S3EndpointConfig } from '../config/s3-config.js';
import { ERR_S3_CERTIFICATE_MISMATCH, ERR_S3_REQUEST_FAILED } from '../errors.js';
import { RateLimiter } from '../sys/rate-limiter.js';

// We pin a version that runs on Node 20 (package.json); its notice that later versions need
// Node 22 would otherwise go to every server log on the first request.
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';

export interface S3ClientOptions {
  /** `https://host[:port]` (or `http://` for a loopback test gateway). */
  endpoint: string;
  region: string;
  accessKey: string;
  secretKey: string;
  /** Path-style addressing (`host/bucket/key`), as most self-hosted stores need. PBS `path-style`. */
  pathStyle: boolean;
  /** SHA-256 fingerprint (`aa:bb:...`) a self-signed https certificate must have. PBS `fingerprint`. */
  fingerprint?: string;
  /** The endpoint's limits (PBS `rate-in`/`burst-in`/`rate-out`/`burst-out`, `put-rate-limit`). */
  limits?: S3TrafficLimits;
  /** What the store does not implement (PBS `provider-quirks`), worked around in createS3Client. */
  quirks?: readonly ProviderQuirk[];
}

/** Bytes per second (bursts of `burst` bytes, one second's worth by default) and PUTs per second. */
export interface S3TrafficLimits {
  in?: { rate: number; burst?: number };
  out?: { rate: number; burst?: number };
  putsPerSecond?: number;
}

/** The traffic limits an `s3.cfg` endpoint sets, or undefined when it sets none. */
export function s3TrafficLimitsFor(conf: S3EndpointConfig): S3TrafficLimits | undefined {
  const bytes = (key: 'rate-in' | 'burst-in' | 'rate-out' | 'burst-out') =>
    conf[key] === undefined ? undefined : parseHumanByte(conf[key], key);
  const direction = (rate: number | undefined, burst: number | undefined) =>
    rate === undefined ? undefined : { rate, ...(burst !== undefined && { burst }) };
  const limits: S3TrafficLimits = {
    in: direction(bytes('rate-in'), bytes('burst-in')),
    out: direction(bytes('rate-out'), bytes('burst-out')),
    putsPerSecond: conf['put-rate-limit'],
  };
  return limits.in || limits.out || limits.putsPerSecond ? limits : undefined;
}

/** PBS's default when an endpoint names no region (`S3ClientOptions::from_config`). */
const DEFAULT_REGION = 'us-west-1';

/**
 * How to reach an endpoint of `s3.cfg`, as PBS's client builds it: https to `endpoint[:port]`
 * with `{{region}}` filled in. A `{{bucket}}.` label means virtual-host addressing (the SDK puts
 * the bucket there); without it the bucket goes into the path, as with `path-style`.
 */
export function s3ClientOptionsFor(conf: S3EndpointConfig): S3ClientOptions {
  const region = conf.region ?? DEFAULT_REGION;
  const vhost = conf.endpoint.includes('{{bucket}}.') && conf['path-style'] !== true;
  const host = conf.endpoint.replaceAll('{{bucket}}.', '').replaceAll('{{region}}', region);
  const authority = host.includes(':') && !host.startsWith('[') ? `[${host}]` : host;
  return {
    endpoint: `https://${authority}${conf.port !== undefined ? `:${conf.port}` : ''}`,
    region,
    accessKey: conf['access-key'],
    secretKey: conf['secret-key'],
    pathStyle: !vhost,
    ...(conf.fingerprint !== undefined && { fingerprint: conf.fingerprint }),
    ...(s3TrafficLimitsFor(conf) && { limits: s3TrafficLimitsFor(conf) }),
    ...(conf['provider-quirks']?.length && { quirks: conf['provider-quirks'] as ProviderQuirk[] }),
  };
}

/**
 * An https agent that accepts a certificate the system trusts or one with the pinned
 * fingerprint, checked before a byte of the request is sent (the agent hands the socket over
 * only after the handshake), as PBS's client pins a self-signed endpoint.
 */
class PinnedHttpsAgent extends HttpsAgent {
  constructor(
    private readonly fingerprint: string,
    opts: AgentOptions,
  ) {
    super(opts);
  }

  override createConnection(
    options: RequestOptions,
    callback?: (err: Error | null, stream: Duplex) => void,
  ): Duplex | null | undefined {
    const socket = tlsConnect({ ...(options as ConnectionOptions), rejectUnauthorized: false });
    socket.once('error', (err) => callback?.(err, socket));
    socket.once('secureConnect', () => {
      const got = (socket.getPeerCertificate().fingerprint256 ?? '').toLowerCase();
      if (socket.authorized || got === this.fingerprint.toLowerCase()) {
        callback?.(null, socket);
        return;
      }
      socket.destroy();
      callback?.(ERR_S3_CERTIFICATE_MISMATCH(got, this.fingerprint.toLowerCase()), socket);
    });
    return undefined;
  }
}

/**
 * An SDK client for one endpoint. The SDK retries throttling and 5xx answers with backoff
 * (standard mode, 3 attempts, as PBS's `MAX_S3_HTTP_REQUEST_RETRY`).
 */
export function createS3Client(opts: S3ClientOptions): S3Client {
  const client = new S3Client({
    endpoint: opts.endpoint,
    region: opts.region,
    forcePathStyle: opts.pathStyle,
    credentials: { accessKeyId: opts.accessKey, secretAccessKey: opts.secretKey },
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
    maxAttempts: 3,
    retryMode: 'standard',
    ...(opts.fingerprint !== undefined && {
      requestHandler: { httpsAgent: new PinnedHttpsAgent(opts.fingerprint, { keepAlive: true }) },
    }),
  });
  if (opts.limits) limitS3Traffic(client, opts.limits);
  if (opts.quirks?.includes('skip-if-none-match-header')) skipIfNoneMatch(client);
  if (opts.quirks?.includes('delete-objects-via-delete-object')) deleteObjectsOneByOne(client);
  return client;
}

/**
 * PBS's `skip-if-none-match-header` quirk: for stores that fail a PUT carrying `If-None-Match`,
 * the header is left out. An insert still asks first whether the chunk is there (HEAD, or the
 * cache); only two servers uploading the same new chunk at once both write it, with the same
 * content, as PBS does with this quirk.
 */
function skipIfNoneMatch(client: S3Client): void {
  client.middlewareStack.add(
    (next) => async (args) => {
      const headers = (args.request as { headers?: Record<string, string> }).headers;
      if (headers) {
        for (const name of Object.keys(headers)) {
          if (name.toLowerCase() === 'if-none-match') delete headers[name];
        }
      }
      return next(args);
    },
    { step: 'build', name: 'stowageS3SkipIfNoneMatch' },
  );
}

/**
 * PBS's `delete-objects-via-delete-object` quirk: for stores without the batched DeleteObjects
 * call, a batch becomes one DELETE per key, one after the other, and answers as DeleteObjects
 * would: the keys it could not delete in `Errors` (PBS `delete_objects`).
 */
function deleteObjectsOneByOne(client: S3Client): void {
  client.middlewareStack.add(
    (next, context) => async (args) => {
      if (context.commandName !== 'DeleteObjectsCommand') return next(args);
      const input = args.input as DeleteObjectsCommandInput;
      const Errors: S3DeleteError[] = [];
      const Deleted: { Key: string }[] = [];
      for (const { Key } of input.Delete?.Objects ?? []) {
        try {
          await client.send(new DeleteObjectCommand({ Bucket: input.Bucket, Key }));
          Deleted.push({ Key: Key! });
        } catch (err) {
          // an answer (403, …) belongs to the key, as in a batch's answer; no answer fails the batch
          if (s3Status(err) === undefined) throw err;
          Errors.push({ Key, Code: (err as Error).name, Message: (err as Error).message });
        }
      }
      const output: DeleteObjectsCommandOutput = {
        $metadata: {},
        ...(input.Delete?.Quiet ? {} : { Deleted }),
        ...(Errors.length > 0 && { Errors }),
      };
      return { output, response: {} } as Awaited<ReturnType<typeof next>>;
    },
    { step: 'initialize', name: 'stowageS3DeleteObjectsOneByOne' },
  );
}

/**
 * Hold each request (each attempt) of `client` to `limits`: a request waits until the outgoing
 * bucket has its body's bytes and, for a PUT, the PUT bucket a token; a response is handed on
 * once the incoming bucket has its body's bytes. So a transfer of N bytes at rate R with burst B
 * takes at least (N - B) / R seconds. PBS limits the connection's bytes as they pass; here the
 * unit is the request (a chunk or a blob, at most a few MiB), which gives the same average.
 */
function limitS3Traffic(client: S3Client, limits: S3TrafficLimits): void {
  const bucket = (l: { rate: number; burst?: number } | undefined) =>
    l && new RateLimiter(l.rate, l.burst ?? l.rate);
  const inbound = bucket(limits.in);
  const outbound = bucket(limits.out);
  const puts = bucket(limits.putsPerSecond === undefined ? undefined : { rate: limits.putsPerSecond });
  client.middlewareStack.add(
    (next) => async (args) => {
      const request = args.request as { method?: string; headers?: Record<string, string>; body?: unknown };
      if (request.method === 'PUT') await puts?.consume(1);
      await outbound?.consume(bodyLength(request.body, request.headers));
      const out = await next(args);
      // a HEAD's content-length is the object's, not sent
      if (request.method !== 'HEAD') {
        await inbound?.consume(
          bodyLength(undefined, (out.response as { headers?: Record<string, string> }).headers),
        );
      }
      return out;
    },
    { step: 'deserialize', name: 'stowageS3TrafficLimit' },
  );
}

/** A request's or response's body size: the bytes when at hand, else its content-length. */
function bodyLength(body: unknown, headers: Record<string, string> | undefined): number {
  if (body instanceof Uint8Array) return body.length;
  if (typeof body === 'string') return Buffer.byteLength(body);
  return Number(headers?.['content-length'] ?? 0) || 0;
}

/** The HTTP status of an S3 failure, or undefined for a network error (refused, reset, timeout). */
export function s3Status(err: unknown): number | undefined {
  if (err instanceof S3ServiceException) return err.$metadata.httpStatusCode;
  const meta = (err as { $metadata?: { httpStatusCode?: number } } | null)?.$metadata;
  return meta?.httpStatusCode;
}

/** Whether `err` is the store's answer `status` (e.g. 404, 412), not a failure to reach it. */
export function isS3Status(err: unknown, status: number): boolean {
  return s3Status(err) === status;
}

/**
 * The operator's error for a failed request: what was asked of which store, and what the store
 * (or the network) answered.
 */
export function s3RequestError(what: string, err: unknown): Error {
  const status = s3Status(err);
  const name = err instanceof Error ? err.name : 'Error';
  const detail =
    status === undefined
      ? `${err instanceof Error ? err.message : String(err)}`
      : `HTTP ${status} ${name}${err instanceof Error && err.message && err.message !== 'UnknownError' ? `: ${err.message}` : ''}`;
  return ERR_S3_REQUEST_FAILED.withOptions({ cause: err }, what, detail);
}

/**
 * An ETag as an `If-Match` header value: without its quotes. Ceph 16's RGW compares the header
 * with the bare hex and answers 412 to the quoted form S3 returns; AWS accepts both.
 */
export function ifMatchValue(etag: string): string {
  return etag.replaceAll('"', '');
}

/** PBS 4's `S3Statistics` of one datastore: requests by method and the bytes sent and received. */
export interface S3RequestCounters {
  get: number;
  put: number;
  post: number;
  delete: number;
  head: number;
  /** Request body bytes sent. */
  uploaded: number;
  /** Response body bytes of GETs received. */
  downloaded: number;
  /**
   * The endpoint's failure in force: set when a request got no answer (connection refused, reset,
   * timed out) or a 5xx, cleared by the next answered request. Not a counter: never summed.
   */
  failure?: S3EndpointFailure;
}

export interface S3EndpointFailure {
  /** The last failed request's error. */
  message: string;
  /** Since when (ms since the epoch) requests have been failing. */
  since: number;
}

type CountedMethod = 'get' | 'put' | 'post' | 'delete' | 'head';

/** Counters at zero. */
export function emptyS3RequestCounters(): S3RequestCounters {
  return { get: 0, put: 0, post: 0, delete: 0, head: 0, uploaded: 0, downloaded: 0 };
}

/**
 * Keep `counters.failure` true to the last request: an answered request (also a 4xx such as 404
 * or 412, which are answers) clears it, one without an answer or with a 5xx sets it.
 */
function noteEndpointOutcome(counters: S3RequestCounters, err: unknown): void {
  const status =
    err === undefined
      ? 200
      : ((err as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode ?? 0);
  if (status > 0 && status < 500) {
    delete counters.failure;
    return;
  }
  const e = err as Error & { code?: string };
  const message = [e.code, e.message].filter((x) => x).join(': ') || String(err);
  counters.failure = {
    message: status > 0 ? `HTTP ${status}: ${message}` : message,
    since: counters.failure?.since ?? Date.now(),
  };
}

/**
 * Count every request `client` sends from now on into `counters` (each attempt of a retried
 * request counts, as it costs the operator one at the store). Returns the live counters; pass
 * the same object for several clients of one datastore to add them up.
 */
export function countS3Requests(
  client: S3Client,
  counters: S3RequestCounters = emptyS3RequestCounters(),
): S3RequestCounters {
  client.middlewareStack.add(
    (next) => async (args) => {
      const request = args.request as { method?: string; headers?: Record<string, string>; body?: unknown };
      const method = request.method?.toLowerCase() as CountedMethod | undefined;
      if (method !== undefined && method in counters) counters[method]++;
      counters.uploaded += bodyLength(request.body, request.headers);
      let out: Awaited<ReturnType<typeof next>>;
      try {
        out = await next(args);
      } catch (err) {
        noteEndpointOutcome(counters, err);
        throw err;
      }
      noteEndpointOutcome(counters, undefined);
      if (method === 'get') {
        counters.downloaded += bodyLength(
          undefined,
          (out.response as { headers?: Record<string, string> }).headers,
        );
      }
      return out;
    },
    // per attempt, after signing and retries are set up: the request as it goes on the wire
    { step: 'deserialize', name: 'stowageS3RequestCounter' },
  );
  return counters;
}
