/**
 * The one error family of Stowage. Every error the core raises for an operator carries a stable
 * `code`, the HTTP status the API answers with, and a message written for the operator. The API
 * layer maps these to PBS's error envelope and the CLIs to exit codes in one place each
 * (`src/server/error-envelope.ts`, `src/cli/exit-codes.ts`); nothing matches on message text.
 */
export type ErrorCode =
  | 'BAD_REQUEST'
  | 'BAD_CONFIG'
  | 'CONFIG_MODIFIED'
  | 'LOCK_TIMEOUT'
  | 'NOT_FOUND'
  | 'ALREADY_EXISTS'
  | 'CONFLICT'
  | 'UNAUTHORIZED'
  | 'FORBIDDEN'
  | 'MAINTENANCE'
  | 'UNSUPPORTED'
  | 'CORRUPT_DATA'
  | 'PROTECTED'
  | 'TIMEOUT'
  | 'INTERNAL';

const STATUS: Record<ErrorCode, number> = {
  BAD_REQUEST: 400,
  BAD_CONFIG: 500,
  CONFIG_MODIFIED: 409,
  LOCK_TIMEOUT: 503,
  NOT_FOUND: 404,
  ALREADY_EXISTS: 409,
  CONFLICT: 409,
  UNAUTHORIZED: 401,
  FORBIDDEN: 403,
  MAINTENANCE: 503,
  // a feature this version lacks (e.g. a PBS 4 removable or S3 datastore): not temporary, so not
  // 503 (which clients treat as "retry later"); 400 as PBS answers its own lookup refusals
  UNSUPPORTED: 400,
  CORRUPT_DATA: 500,
  PROTECTED: 409,
  TIMEOUT: 504,
  INTERNAL: 500,
};

/** Whether `code` is one of the codes above (e.g. one a server sent back). */
export function isErrorCode(code: unknown): code is ErrorCode {
  return typeof code === 'string' && Object.hasOwn(STATUS, code);
}

export class StowageError extends Error {
  readonly code: ErrorCode;
  readonly status: number;
  /** Structured details for API clients (e.g. the conflicting operations of a refused change). */
  readonly details?: unknown;

  constructor(code: ErrorCode, message: string, options?: { cause?: unknown; details?: unknown }) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'StowageError';
    this.code = code;
    this.status = STATUS[code];
    this.details = options?.details;
  }
}

/** Bad input from a client or operator; the message names the parameter that was wrong. */
export class BadRequestError extends StowageError {
  constructor(message: string, details?: unknown) {
    super('BAD_REQUEST', message, { details });
  }
}

/** One problem with one parameter, as the schema check reports it. */
export interface ParameterProblem {
  param: string;
  message: string;
}

/**
 * Parameters that failed the schema check, each named: PBS's wording,
 * `parameter verification failed - 'store': parameter is missing` (several joined by `, `).
 */
export class ParameterError extends BadRequestError {
  readonly problems: readonly ParameterProblem[];

  constructor(problems: readonly ParameterProblem[]) {
    const first = new Map<string, string>();
    for (const p of problems) if (!first.has(p.param)) first.set(p.param, p.message);
    const text = [...first].map(([k, v]) => `'${k}': ${v}`).join(', ');
    super(`parameter verification failed - ${text}`);
    this.problems = problems;
  }

  /** The first problem of each parameter, as the envelope's `errors` object. */
  get errors(): Record<string, string> {
    const out: Record<string, string> = {};
    for (const p of this.problems) out[p.param] ??= p.message;
    return out;
  }
}

export class NotFoundError extends StowageError {
  constructor(message: string) {
    super('NOT_FOUND', message);
  }
}

/** Stored data failed a check (magic, CRC, digest, size). Never silently repaired. */
export class CorruptDataError extends StowageError {
  constructor(message: string) {
    super('CORRUPT_DATA', message);
  }
}

/** A configuration file that cannot be parsed. Never treated as "empty" or "no maintenance". */
export class BadConfigError extends StowageError {
  constructor(message: string) {
    super('BAD_CONFIG', message);
  }
}

/** PBS's exact wording for a stale digest (reference §6.1). */
export class ConfigModifiedError extends StowageError {
  constructor() {
    super('CONFIG_MODIFIED', 'detected modified configuration - file changed by other user? Try again.');
  }
}

export class LockTimeoutError extends StowageError {
  constructor(path: string, timeoutMs: number) {
    super('LOCK_TIMEOUT', `Unable to acquire lock "${path}" - got timeout after ${timeoutMs / 1000}s`);
  }
}

/**
 * Failed authentication. Credential failures all carry the same message so that a caller cannot
 * tell a wrong password from an unknown user (reference §8.1).
 */
export class UnauthorizedError extends StowageError {
  constructor(message = 'authentication failed') {
    super('UNAUTHORIZED', message);
  }
}

/** Authenticated, but a privilege is missing; the message names it and the ACL path. */
export class ForbiddenError extends StowageError {
  constructor(message: string) {
    super('FORBIDDEN', message);
  }
}

/**
 * An error that PBS raises with its own HTTP status (`http_err!`) on the backup and reader
 * protocols, where every other error is answered 400 (`src/server/error-envelope.ts`,
 * `protocolErrorResponse`): an unknown path, namespace or file (404), a chunk not registered for
 * download (401).
 */
export class ProtocolHttpError extends StowageError {}

/**
 * HTTP header that carries the `code` of an error answered as a bare message (the backup and
 * reader protocols, where PBS clients expect the message as the body); PBS clients ignore it.
 */
export const ERROR_CODE_HEADER = 'x-stowage-error-code';

export function isStowageError(err: unknown): err is StowageError {
  return err instanceof StowageError;
}
