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
