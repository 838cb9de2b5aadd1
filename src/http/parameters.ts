/**
 * Request parameters as proxmox-rest-server reads them (`get_request_parameters`,
 * `parse_query_parameters` in its `rest.rs`), for the REST API and the backup/reader protocols
 * alike:
 *
 * - `Content-Type: application/json`: the parameters are the JSON object of the body; an empty
 *   body is no parameters.
 * - `application/x-www-form-urlencoded`, or no content type: the form-encoded body and the query
 *   string together; an empty body is no parameters.
 * - any other content type: 400 `unsupported content type`.
 * - upload and download endpoints (PBS's `AsyncHttp` handlers, whose body is data): the query only.
 *
 * Values from a form or a query are strings and are converted to the schema's types ("1",
 * "true", one array item); PBS's ExtJS `_dc` cache buster is ignored; a parameter the schema does
 * not know is refused, as PBS's schema check does.
 */
import type { Static, TSchema } from 'typebox';
import { Compile, type Validator } from 'typebox/compile';
import { Value } from 'typebox/value';
import { BadRequestError, ParameterError, type ParameterProblem } from '../errors.js';

/** PBS `MAX_REQUEST_BODY_SIZE`: a parameter body larger than this is refused. */
export const MAX_PARAMETER_BODY = 512 * 1024;

export type RawParams = Record<string, unknown>;

/** Parse `a=1&b=2&b=3` into `{a: '1', b: ['2', '3']}` (a repeated key is an array, as PBS reads it). */
export function parseFormParams(text: string): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = {};
  addFormParams(out, new URLSearchParams(text));
  return out;
}

function addFormParams(into: RawParams, params: URLSearchParams): void {
  for (const [k, v] of params) {
    if (k === '_dc') continue; // ExtJS "disable cache"; PBS skips it
    const prev = into[k];
    into[k] = prev === undefined ? v : [...[prev as string | string[]].flat(), v];
  }
}

/** The media type of a Content-Type header, lower case, without parameters (`; charset=...`). */
export function mediaType(contentType: string | undefined): string | undefined {
  const t = contentType?.split(';')[0]?.trim().toLowerCase();
  return t ? t : undefined;
}

/**
 * The parameters of a request whose body may carry them (see the module comment). `body` is the
 * whole request body; the query is only read when the body is not JSON, as PBS does.
 */
export function requestParams(
  contentType: string | undefined,
  body: Buffer,
  query: URLSearchParams,
): RawParams {
  const type = mediaType(contentType);
  if (type === 'application/json') {
    if (body.length === 0) return {};
    let value: unknown;
    try {
      value = JSON.parse(body.toString('utf8'));
    } catch (err) {
      throw new BadRequestError(`request body is not valid JSON - ${(err as Error).message}`);
    }
    if (typeof value !== 'object' || value === null || Array.isArray(value)) {
      throw new BadRequestError('request body must be a JSON object of parameters');
    }
    return value as RawParams;
  }
  if (type !== undefined && type !== 'application/x-www-form-urlencoded') {
    throw new BadRequestError(`unsupported content type "${contentType}"`);
  }
  const out: RawParams = {};
  if (body.length > 0) addFormParams(out, new URLSearchParams(body.toString('utf8')));
  addFormParams(out, query);
  return out;
}

/** The parameters of an upload or download endpoint: the query only. */
export function queryParams(query: URLSearchParams): RawParams {
  const out: RawParams = {};
  addFormParams(out, query);
  return out;
}

/**
 * Parameters the schema does not declare (PBS: "schema does not allow additional properties").
 * Checked here rather than by `additionalProperties: false` in each schema, because typebox's
 * value conversion does not survive a cloned schema.
 */
export function unknownParams(schema: TSchema | undefined, value: unknown): ParameterProblem[] {
  const s = schema as
    (TSchema & { properties?: Record<string, unknown>; additionalProperties?: unknown }) | undefined;
  if (!s?.properties || s.additionalProperties !== undefined || typeof value !== 'object' || value === null)
    return [];
  return Object.keys(value)
    .filter((k) => !Object.hasOwn(s.properties!, k))
    .map((param) => ({ param, message: 'schema does not allow additional properties' }));
}

export interface ValidationIssue {
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

const compiled = new WeakMap<TSchema, Validator>();

/** The compiled validator of `schema` (compiled once per schema object). */
export function validatorOf(schema: TSchema): Validator {
  let v = compiled.get(schema);
  if (!v) {
    v = Compile(schema);
    compiled.set(schema, v);
  }
  return v;
}

/**
 * Convert `raw` to the schema's types and check it; throws ParameterError naming every bad,
 * missing or unknown parameter.
 */
export function checkParams<S extends TSchema>(schema: S, raw: RawParams): Static<S> {
  const converted = Value.Convert(schema, raw);
  const extra = unknownParams(schema, converted);
  const check = validatorOf(schema);
  if (extra.length === 0 && check.Check(converted)) return converted as Static<S>;
  const issues = check.Check(converted) ? [] : (check.Errors(converted) as ValidationIssue[]);
  throw new ParameterError([...validationProblems(issues), ...extra]);
}
