/**
 * Route objects, PBS's `#[api]` beside each function: a route module exports its method, path,
 * schemas, required permission and handler side by side, and `registerRoutes` applies
 * validation, authentication, the CSRF check and the permission check in one place.
 */
import type { FastifyReply, FastifyRequest } from 'fastify';
import type { Static, TSchema } from 'typebox';
import type { ServerContext } from './context.js';
import type { UserInfo } from './permissions.js';

export type HttpMethod = 'GET' | 'POST' | 'PUT' | 'DELETE';

/**
 * A privilege check on an ACL path. `{name}` in the path is replaced by the URL parameter of that
 * name before the check (as proxmox-router does), e.g. `/datastore/{store}`.
 */
export interface Permission {
  path: string;
  privs: readonly string[];
  /** Any one of `privs` suffices (proxmox-router `partial`). */
  partial?: boolean;
}

/** Passes when the URL parameter `userParam` equals the caller's auth id (PBS `UserParam`). */
export interface UserParamPermission {
  userParam: string;
}

/** Passes when any alternative passes (PBS `Permission::Or`). */
export interface AnyOfPermission {
  anyOf: ReadonlyArray<Permission | UserParamPermission>;
}

/**
 * What a route requires:
 * - `'anybody'`: no authentication at all (PBS `Permission::World`; only the login route);
 * - `'authenticated'`: any valid ticket or token (PBS `Permission::Anybody`); the handler filters
 *   or checks further and its `description` says how;
 * - a privilege check, a user-parameter check, or alternatives of those.
 */
export type RoutePermission =
  'anybody' | 'authenticated' | Permission | UserParamPermission | AnyOfPermission;

type StaticOr<S, D> = S extends TSchema ? Static<S> : D;
type Empty = Record<string, never>;

/** What a handler gets. */
export interface RouteContext<P, Q, B> {
  params: P;
  query: Q;
  body: B;
  /** The authenticated user or token (`user@realm!token`); empty on `'anybody'` routes. */
  authId: string;
  /** Permission snapshot taken for this request. */
  userInfo: UserInfo;
  server: ServerContext;
  request: FastifyRequest;
  reply: FastifyReply;
  /** Add a result attribute beside `data` (PBS rpcenv attributes such as `digest`, `total`). */
  setAttribute(name: string, value: unknown): void;
}

export interface RouteSpec<
  P extends TSchema | undefined,
  Q extends TSchema | undefined,
  B extends TSchema | undefined,
> {
  method: HttpMethod;
  /** Below `/api2/json`, fastify syntax (`/admin/datastore/:store/status`). */
  path: string;
  params?: P;
  query?: Q;
  body?: B;
  /** Schema of `data` (documentation, and checked by tests; not enforced at runtime). */
  returns?: TSchema;
  permission: RoutePermission;
  /** PBS runs protected calls in its privileged daemon; Stowage has one process, so this is documentation. */
  protected?: boolean;
  description: string;
  /**
   * Returns `data` of the `{"data": ...}` envelope. A handler that sends its own reply (streams,
   * downloads) returns `ctx.reply`.
   */
  handler(ctx: RouteContext<StaticOr<P, Empty>, StaticOr<Q, Empty>, StaticOr<B, Empty>>): unknown;
}

// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type AnyRoute = RouteSpec<any, any, any>;

/** Declare a route; the identity function, there for type inference of the handler's context. */
export function defineRoute<
  P extends TSchema | undefined = undefined,
  Q extends TSchema | undefined = undefined,
  B extends TSchema | undefined = undefined,
>(spec: RouteSpec<P, Q, B>): RouteSpec<P, Q, B> {
  return spec;
}
