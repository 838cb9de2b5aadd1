/**
 * The one registrar of API routes under `/api2/json`. Order per request, as proxmox-rest-server:
 * authentication (401) and CSRF check → permission check on the URL parameters (403) →
 * parameter validation (400, naming the parameter) → handler → `{"data": ...}` envelope. Errors
 * of every stage go through `error-envelope.ts`.
 */
import type { FastifyInstance, FastifyReply, FastifyRequest, FastifySchemaCompiler } from 'fastify';
import type { TSchema } from 'typebox';
import { Value } from 'typebox/value';
import {
  BadRequestError,
  ERR_NO_CREDENTIALS,
  ERR_ROUTE_DUPLICATE,
  ERR_ROUTE_FILTER_UNEXPLAINED,
  ERR_ROUTE_NO_DESCRIPTION,
  ERR_ROUTE_NO_PERMISSION,
  ERR_ROUTE_UNKNOWN_PARAM,
  ERR_ROUTE_UNKNOWN_PERMISSION,
  ForbiddenError,
  ParameterError,
  UnauthorizedError,
} from '../errors.js';
import { authenticate, type AuthResult } from './auth/authenticate.js';
import type { ServerContext } from './context.js';
import { errorEnvelope, reasonPhrase } from './error-envelope.js';
import {
  checkParams,
  MAX_PARAMETER_BODY,
  mediaType,
  parseFormParams,
  type RawParams,
  unknownParams,
  validatorOf,
} from './parameters.js';
import type { UserInfo } from './permissions.js';
import type {
  AnyRoute,
  CheckedPermission,
  Permission,
  RoutePermission,
  UserParamPermission,
} from './route.js';

export const API_PREFIX = '/api2/json';

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/**
 * Validator for typebox schemas. Unlike the stock provider it also converts body values, because
 * PBS clients send POST/PUT parameters form-encoded as often as JSON (the web UI does), and form
 * values arrive as strings ("1", "true", a single array item).
 */
const validatorCompiler: FastifySchemaCompiler<TSchema> = ({ schema }) => {
  const check = validatorOf(schema);
  return (value: unknown) => {
    const converted = Value.Convert(schema, value);
    if (check.Check(converted)) return { value: converted };
    return { error: check.Errors(converted) as never };
  };
};

function isParameterObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Buffer.isBuffer(v) && !Array.isArray(v);
}

/**
 * Gather the parameters where PBS looks for them (`src/http/parameters.ts`) and hand them to
 * the schema the route declares: a body with no content type, an empty JSON body and no body at
 * all are "no parameters" (python3-proxmoxer and curl send a bodyless POST); the query string and
 * a form or JSON body are read together, whichever of `body` or `query` the route validates. A
 * raw body (an upload) stays as it is.
 */
function gatherParameters(route: AnyRoute, request: FastifyRequest): void {
  const query = isParameterObject(request.query) ? request.query : {};
  if (route.body) {
    if (request.body === undefined || request.body === null || request.body === '') request.body = {};
    if (isParameterObject(request.body)) request.body = { ...query, ...request.body };
  } else if (route.query && isParameterObject(request.body)) {
    request.query = { ...query, ...request.body };
  }
}

function urlParamNames(path: string): string[] {
  return [...path.matchAll(/:([A-Za-z0-9_-]+)/g)].map((m) => m[1]!);
}

/** The URL-parameter checks of a permission (none for 'anybody', filtered and checked ones). */
function permissionParts(p: RoutePermission): Array<Permission | UserParamPermission> {
  if (typeof p === 'string' || 'filtered' in p || 'checked' in p) return [];
  if ('anyOf' in p) return [...p.anyOf];
  if ('allOf' in p) return [...p.allOf];
  return [p];
}

/** The route's parameter-dependent check, applied after validation (`ctx.access`). */
export function checkedPermission(p: RoutePermission): CheckedPermission | undefined {
  return typeof p === 'object' && 'checked' in p ? p : undefined;
}

function placeholders(path: string): string[] {
  return [...path.matchAll(/\{([^}]+)\}/g)].map((m) => m[1]!);
}

function schemaKeys(schema: unknown): string[] {
  const props = (schema as { properties?: Record<string, unknown> } | undefined)?.properties;
  return props ? Object.keys(props) : [];
}

function isKnownPermission(p: unknown): p is RoutePermission {
  if (p === 'anybody') return true;
  if (typeof p !== 'object' || p === null) return false;
  return ['filtered', 'checked', 'anyOf', 'allOf', 'userParam', 'path'].some((k) => k in p);
}

/** Registration-time checks, so a typo in a route fails at startup rather than per request. */
export function checkRouteDeclaration(route: AnyRoute): void {
  const where = `${route.method} ${route.path}`;
  if (!route.permission) throw ERR_ROUTE_NO_PERMISSION(where);
  if (!route.description) throw ERR_ROUTE_NO_DESCRIPTION(where);
  const perm = route.permission;
  if (!isKnownPermission(perm)) throw ERR_ROUTE_UNKNOWN_PERMISSION(where);
  if (typeof perm === 'object' && 'filtered' in perm && perm.filtered.trim().length < 10)
    throw ERR_ROUTE_FILTER_UNEXPLAINED(where);
  const names = urlParamNames(route.path);
  for (const part of permissionParts(perm)) {
    const needed = 'userParam' in part ? [part.userParam] : placeholders(part.path);
    for (const n of needed) {
      if (!names.includes(n)) throw ERR_ROUTE_UNKNOWN_PARAM(where, n);
    }
  }
  const checked = checkedPermission(perm);
  if (checked) {
    const known = [...names, ...schemaKeys(route.query), ...schemaKeys(route.body)];
    for (const n of placeholders(checked.checked.path)) {
      if (!known.includes(n)) throw ERR_ROUTE_UNKNOWN_PARAM(where, n);
    }
  }
}

function substitute(path: string, params: Record<string, string>): string | undefined {
  let bad = false;
  const out = path.replace(/\{([^}]+)\}/g, (_, name: string) => {
    const v = params[name] ?? '';
    // a decoded `%2F` must not reach a deeper (or shallower) ACL node than the route means
    if (v === '' || v.includes('/') || v === '.' || v === '..') bad = true;
    return v;
  });
  return bad ? undefined : out;
}

/** Throw ForbiddenError unless `authId` passes `perm` with these URL parameters. */
export function checkRoutePermission(
  perm: RoutePermission,
  authId: string,
  params: Record<string, string>,
  info: UserInfo,
): void {
  if (perm === 'anybody' || 'filtered' in perm || 'checked' in perm) return;
  if ('allOf' in perm) {
    for (const part of perm.allOf) checkRoutePermission(part, authId, params, info);
    return;
  }
  let firstError: ForbiddenError | undefined;
  for (const part of permissionParts(perm)) {
    if ('userParam' in part) {
      if (params[part.userParam] === authId) return;
      firstError ??= new ForbiddenError('permission check failed');
      continue;
    }
    const path = substitute(part.path, params);
    if (path === undefined) {
      firstError ??= new ForbiddenError('permission check failed');
      continue;
    }
    if (part.orBelow && info.anyPrivsBelow(authId, path, part.privs)) return;
    try {
      info.checkPrivs(authId, path, part.privs, { partial: part.partial });
      return;
    } catch (err) {
      if (!(err instanceof ForbiddenError)) throw err;
      firstError ??= err;
    }
  }
  throw firstError ?? new ForbiddenError('permission check failed');
}

const authOf = new WeakMap<FastifyRequest, AuthResult>();
const accessOf = new WeakMap<FastifyRequest, unknown>();

/**
 * Register `routes` under `/api2/json` as one fastify plugin (with its own 404 and error
 * handlers, so other parts of the server — web UI, protocol upgrades — keep theirs).
 */
export async function registerRoutes(
  app: FastifyInstance,
  routes: readonly AnyRoute[],
  ctx: ServerContext,
): Promise<void> {
  const seen = new Set<string>();
  for (const r of routes) {
    checkRouteDeclaration(r);
    const key = `${r.method} ${r.path}`;
    if (seen.has(key)) throw ERR_ROUTE_DUPLICATE(key);
    seen.add(key);
  }
  // PBS reads every request's body for parameters, a GET's too (proxmox-rest-server
  // `get_request_parameters`); fastify skips a GET body unless GET is declared as having one.
  // Server-wide: fastify keeps one table of methods for all its plugins.
  app.addHttpMethod('GET', { hasBody: true, overrideExisting: true });

  await app.register(
    async (api) => {
      api.setValidatorCompiler(validatorCompiler);
      // Only the content types PBS reads (fastify's defaults would take text/plain as a string)
      api.removeAllContentTypeParsers();
      api.addContentTypeParser(
        'application/x-www-form-urlencoded',
        { parseAs: 'string', bodyLimit: MAX_PARAMETER_BODY },
        (_req, body, done) => done(null, parseFormParams(body as string)),
      );
      // PBS treats an empty JSON body as no parameters; fastify's own parser refuses it
      api.addContentTypeParser(
        'application/json',
        { parseAs: 'string', bodyLimit: MAX_PARAMETER_BODY },
        (_req, body, done) => {
          const text = (body as string).trim();
          if (text === '') return done(null, {});
          try {
            done(null, JSON.parse(text));
          } catch (err) {
            done(
              new BadRequestError(`request body is not valid JSON - ${(err as Error).message}`),
              undefined,
            );
          }
        },
      );
      // PBS: any other content type is a 400 naming it (fastify would answer 415)
      api.addContentTypeParser('*', (request, _payload, done) => {
        const type = mediaType(request.headers['content-type']);
        done(new BadRequestError(`unsupported content type "${type ?? ''}"`), undefined);
      });
      // The body of an upload endpoint (PBS `upload-backup-log`) is data, not parameters: the
      // handler gets it as a Buffer. Up to a blob of PBS's MAX_BLOB_SIZE (128 MiB) plus header.
      api.addContentTypeParser(
        'application/octet-stream',
        { parseAs: 'buffer', bodyLimit: 128 * 1024 * 1024 + 64 },
        (_req, body, done) => done(null, body),
      );

      api.setErrorHandler((err, request, reply) => {
        const env = errorEnvelope(err);
        const reason = (err as { reason?: string }).reason;
        if (env.status >= 500) request.log.error({ err }, 'API request failed');
        else if (reason) request.log.info({ reason, url: request.url }, 'authentication failed');
        reply.raw.statusMessage = reasonPhrase(env.body.message);
        void reply
          .status(env.status)
          .headers(env.headers ?? {})
          .send(env.body);
      });
      api.setNotFoundHandler((request, reply) => {
        const message = `Path '${request.url.split('?')[0]}' not found.`;
        reply.raw.statusMessage = reasonPhrase(message);
        void reply.status(404).send({ data: null, message });
      });

      for (const route of routes) {
        api.route({
          method: route.method,
          url: route.path,
          schema: {
            ...(route.params && { params: route.params }),
            ...(route.query && { querystring: route.query }),
            ...(route.body && { body: route.body }),
          },
          onRequest: async (request: FastifyRequest) => {
            // ExtJS adds a `_dc` cache buster to GETs; PBS ignores it
            const q = request.query as Record<string, unknown> | undefined;
            if (q && '_dc' in q) delete q._dc;
            if (route.permission === 'anybody') return;
            try {
              authOf.set(request, authenticate(ctx, request.method, request.headers));
            } catch (err) {
              const noCredentials = ERR_NO_CREDENTIALS.is(err);
              if (err instanceof UnauthorizedError && !noCredentials) await sleep(ctx.authFailureDelayMs);
              throw err;
            }
          },
          preValidation: async (request: FastifyRequest) => {
            gatherParameters(route, request);
            const auth = authOf.get(request);
            if (!auth) return;
            // The URL's own parameters name the ACL path the permission is checked on: a value
            // the schema refuses (a decoded `..` or `a/b`) is a 400 naming it, not a 403 about
            // a path that cannot exist.
            if (route.params) checkParams(route.params, request.params as RawParams);
            const info = ctx.userInfo.get();
            checkRoutePermission(
              route.permission,
              auth.authId,
              request.params as Record<string, string>,
              info,
            );
          },
          preHandler: async (request: FastifyRequest) => {
            const extra = [
              ...unknownParams(route.query, request.query),
              ...unknownParams(route.body, request.body),
            ];
            if (extra.length > 0) throw new ParameterError(extra);
            // a privilege on a namespace named by a parameter: after validation, before the handler
            // (so before admission: 403 whatever the maintenance mode)
            const checked = checkedPermission(route.permission);
            const auth = authOf.get(request);
            if (checked && auth) {
              accessOf.set(
                request,
                checked.check({
                  authId: auth.authId,
                  userInfo: ctx.userInfo.get(),
                  server: ctx,
                  params: (request.params ?? {}) as Record<string, string>,
                  parameters: {
                    ...(isParameterObject(request.query) ? request.query : {}),
                    ...(isParameterObject(request.body) ? request.body : {}),
                  },
                }),
              );
            }
          },
          handler: async (request: FastifyRequest, reply: FastifyReply) => {
            const attributes: Record<string, unknown> = {};
            const result = await route.handler({
              params: (request.params ?? {}) as never,
              query: (request.query ?? {}) as never,
              body: (request.body ?? {}) as never,
              authId: authOf.get(request)?.authId ?? '',
              userInfo: ctx.userInfo.get(),
              server: ctx,
              access: accessOf.get(request),
              request,
              reply,
              setAttribute: (name, value) => {
                attributes[name] = value;
              },
            });
            if (result === reply || reply.sent) return reply;
            return reply.send({ data: result ?? null, ...attributes });
          },
        });
      }
    },
    { prefix: API_PREFIX },
  );
}
