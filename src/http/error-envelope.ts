/**
 * The one place errors become HTTP responses.
 *
 * Envelope (chosen for Stowage, documented in docs): success is `{"data": ..., <attributes>}` as
 * PBS's JSON formatter sends it (reference §6.1). An error is the HTTP status with a JSON body
 * `{"data": null, "message": "<text>"}`, plus `"errors": {"<param>": "<text>"}` for parameter
 * errors. PBS's JSON formatter sends the bare message as the body and its ExtJS formatter sends
 * `message`/`errors`; we take the ExtJS keys so the body stays JSON, and keep PBS's wording:
 * `parameter verification failed - 'store': ...`, `permission check failed - missing ...`,
 * `authentication failed`.
 */
import {
  ERROR_CODE_HEADER,
  ParameterError,
  ProtocolHttpError,
  StowageError,
  isStowageError,
  type ParameterProblem,
} from '../errors.js';
import { validationProblems, type ValidationIssue } from './parameters.js';

export interface ErrorEnvelope {
  status: number;
  body: { data: null; message: string; code?: string; errors?: Record<string, string>; details?: unknown };
  headers?: Record<string, string>;
}

/** PBS-style message for failed parameter verification, naming each parameter. */
export function parameterErrorEnvelope(problems: readonly ParameterProblem[]): ErrorEnvelope {
  return envelopeOf(new ParameterError(problems));
}

function envelopeOf(err: StowageError): ErrorEnvelope {
  // details (e.g. the conflicting operations of a refused mode change) go to every client;
  // `code` (Stowage extension) lets a client tell a maintenance refusal from another 503
  const body = {
    data: null,
    message: err.message,
    code: err.code,
    ...(err instanceof ParameterError && { errors: err.errors }),
    ...(err.details !== undefined && { details: err.details }),
  };
  return { status: err.status, body };
}

/** Longest reason phrase sent; python's http.client refuses a status line over 64 KiB. */
const MAX_REASON_BYTES = 1024;

/**
 * The HTTP reason phrase of an error reply: the message itself, as Proxmox VE's API server sends
 * it (`HTTP/1.1 403 Permission check failed ...`). python3-proxmoxer (1.2.0, `core.py`) builds
 * the text of its ResourceException from the reason phrase and `data.errors`, not from the body's
 * `message`, so with the standard phrase an operator's script printed only "403 Forbidden:
 * Forbidden". PBS sends the standard phrase and the bare message as the body, which proxmoxer
 * shows as `- b'<message>'`. One line: control characters become spaces; other text goes as its
 * UTF-8 bytes (node writes the status line as latin1, so each byte is one latin1 character).
 */
export function reasonPhrase(message: string): string {
  const line = message.replace(/[\x00-\x1f\x7f]+/g, ' ').trim();
  let bytes = Buffer.from(line, 'utf8');
  if (bytes.length > MAX_REASON_BYTES)
    bytes = Buffer.concat([bytes.subarray(0, MAX_REASON_BYTES), Buffer.from('...')]);
  return bytes.toString('latin1');
}

interface FastifyLikeError {
  statusCode?: number;
  code?: string;
  message?: string;
  validation?: ValidationIssue[];
  validationContext?: string;
}

/**
 * Map any thrown value to the envelope. StowageError carries its own status; fastify's own
 * errors (bad JSON, body too large, unsupported media type) keep their 4xx status; anything else
 * is a 500 whose message is passed through as PBS does (and logged by the caller).
 */
export function errorEnvelope(err: unknown): ErrorEnvelope {
  if (isStowageError(err)) return envelopeOf(err);
  const e = err as FastifyLikeError;
  if (e && Array.isArray(e.validation)) {
    return parameterErrorEnvelope(validationProblems(e.validation, e.validationContext));
  }
  if (e && typeof e.statusCode === 'number' && e.statusCode >= 400 && e.statusCode < 500) {
    return { status: e.statusCode, body: { data: null, message: e.message ?? 'bad request' } };
  }
  const message = err instanceof Error ? err.message : String(err);
  return { status: 500, body: { data: null, message: message || 'internal error' } };
}

export interface ProtocolErrorResponse {
  status: number;
  /** The bare message, as PBS sends it. */
  body: Buffer;
  headers: Record<string, string>;
}

/**
 * An error on the backup and reader protocols (the upgrade request and every call inside the
 * HTTP/2 session), answered as PBS answers it (proxmox-rest-server `error_to_response` and
 * `H2Service`): the bare message as the body, with PBS's JSON content type, and status 400 —
 * except for the errors PBS raises as HTTP errors with their own status: authentication (401),
 * a missing privilege (403), and those the protocol code throws as `ProtocolHttpError`. PBS
 * clients print that body verbatim. The Stowage error code goes in `x-stowage-error-code`, so
 * Stowage's client still tells a maintenance refusal (exit 75) from a bad request.
 */
export function protocolErrorResponse(err: unknown): ProtocolErrorResponse {
  let status = 400;
  let code = 'INTERNAL';
  let message = err instanceof Error ? err.message : String(err);
  if (isStowageError(err)) {
    code = err.code;
    if (err instanceof ProtocolHttpError || code === 'UNAUTHORIZED' || code === 'FORBIDDEN')
      status = err.status;
  }
  if (!message) message = 'internal error';
  return {
    status,
    body: Buffer.from(message),
    headers: { 'content-type': 'application/json;charset=UTF-8', [ERROR_CODE_HEADER]: code },
  };
}
