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
import { isStowageError } from '../errors.js';

export interface ErrorEnvelope {
  status: number;
  body: { data: null; message: string; code?: string; errors?: Record<string, string>; details?: unknown };
  headers?: Record<string, string>;
}

/** One problem with one parameter, as the validator reports it. */
export interface ParameterProblem {
  param: string;
  message: string;
}

/** PBS-style message for failed parameter verification, naming each parameter. */
export function parameterErrorEnvelope(problems: readonly ParameterProblem[]): ErrorEnvelope {
  const errors: Record<string, string> = {};
  for (const p of problems) errors[p.param] ??= p.message;
  const text = Object.entries(errors)
    .map(([k, v]) => `'${k}': ${v}`)
    .join(', ');
  return { status: 400, body: { data: null, message: `parameter verification failed - ${text}`, errors } };
}

interface ValidationIssue {
  keyword?: string;
  instancePath?: string;
  schemaPath?: string;
  params?: Record<string, unknown>;
  message?: string;
}

/** Turn typebox/ajv validation issues into per-parameter problems. */
export function validationProblems(issues: readonly ValidationIssue[], context?: string): ParameterProblem[] {
  const out: ParameterProblem[] = [];
  for (const i of issues) {
    const path = (i.instancePath ?? '').split('/').filter(Boolean);
    if (i.keyword === 'required') {
      const missing = (i.params?.requiredProperties ?? i.params?.missingProperty) as
        string[] | string | undefined;
      for (const m of [missing ?? []].flat())
        out.push({ param: [...path, m].join('.'), message: 'parameter is missing' });
    } else if (i.keyword === 'additionalProperties') {
      const extra = (i.params?.additionalProperties ?? i.params?.additionalProperty) as
        string[] | string | undefined;
      for (const e of [extra ?? []].flat()) {
        out.push({ param: [...path, e].join('.'), message: 'schema does not allow additional properties' });
      }
    } else if (i.keyword === 'boolean' && i.schemaPath?.endsWith('additionalProperties')) {
      continue; // typebox reports an extra property twice; the additionalProperties issue names it
    } else {
      const param = path.length > 0 ? path.join('.') : (context ?? 'parameters');
      out.push({ param, message: i.message ?? 'invalid value' });
    }
  }
  return out;
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
  if (isStowageError(err)) {
    // details (e.g. the conflicting operations of a refused mode change) go to every client;
    // `code` (Stowage extension) lets a client tell a maintenance refusal from another 503
    const body = {
      data: null,
      message: err.message,
      code: err.code,
      ...(err.details !== undefined && { details: err.details }),
    };
    return { status: err.status, body };
  }
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
