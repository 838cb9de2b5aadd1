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
  /** Also passes with any of `privs` on a path below (listings filtered per item). */
  orBelow?: boolean;
}

/** Passes when the URL parameter `userParam` equals the caller's auth id (PBS `UserParam`). */
export interface UserParamPermission {
  userParam: string;
}

/** Passes when any alternative passes (PBS `Permission::Or`). */
export interface AnyOfPermission {
  anyOf: ReadonlyArray<Permission | UserParamPermission>;
}

/** Passes when every part passes (PBS `Permission::And`); a refusal names the first failing part. */
export interface AllOfPermission {
  allOf: readonly Permission[];
}

/**
 * Any authenticated caller (PBS `Permission::Anybody`), because the handler filters per item or
 * checks something the ACL cannot express. `filtered` says how, in words a reviewer can check
 * against the handler; the route-walking test refuses a route that does not say it.
 */
export interface FilteredPermission {
  filtered: string;
}

/** Declare a route open to every authenticated caller and say how its handler filters. */
export function filtered(how: string): FilteredPermission {
  return { filtered: how };
}

/** What a parameter-dependent permission check reads. */
export interface PermissionInput {
  authId: string;
  userInfo: UserInfo;
  server: ServerContext;
  /** URL parameters. */
  params: Record<string, string>;
  /** The validated query and body parameters, body winning (where PBS reads them, together). */
  parameters: Record<string, unknown>;
}

/**
 * A privilege check on an ACL path that also names query or body parameters (a namespace), so it
 * runs after parameter validation and before the handler, and hands its outcome to the handler as
 * `ctx.access`. Its main use is PBS's "privilege A, or privilege B + ownership of the group"
 * (`check_privs_and_load_store`, reference §2): the registrar checks "any of `privs` or `owner`"
 * here (403 before anything is admitted); the ownership part needs the admitted datastore and is
 * applied by the one helper `ctx.access` carries. Declared through a factory such as
 * `ownerChecked` (src/api2/admin/datastore/access.ts); the registrar knows only this interface.
 */
export interface CheckedPermission<A = unknown> {
  readonly checked: {
    /** ACL path template: `{name}` is a URL parameter or a query/body parameter. */
    readonly path: string;
    /** Privileges of full access (any one suffices). */
    readonly privs: readonly string[];
    /** Privileges giving access to the caller's own groups only; empty without an owner part. */
    readonly owner: readonly string[];
    /** Also passes with any of the privileges on a path below (listings filtered per item). */
    readonly orBelow?: boolean;
  };
  /** Throws ForbiddenError (403) or a parameter error (400); returns what `ctx.access` holds. */
  check(input: PermissionInput): A;
}

/**
 * What a route requires:
 * - `'anybody'`: no authentication at all (PBS `Permission::World`; only the login route);
 * - `filtered(how)`: any valid ticket or token (PBS `Permission::Anybody`); the handler filters
 *   or checks further, as `how` says;
 * - a privilege check on URL parameters, a user-parameter check, alternatives of those, or
 *   several privilege checks that must all pass (checked before parameter validation, as
 *   proxmox-router);
 * - a `CheckedPermission` (privilege on a namespace, "A or B+owner"), checked after validation.
 */
export type RoutePermission =
  | 'anybody'
  | FilteredPermission
  | Permission
  | UserParamPermission
  | AnyOfPermission
  | AllOfPermission
  | CheckedPermission;

/** What a route's handler finds in `ctx.access`: the outcome of a `CheckedPermission`. */
export type AccessOf<R> = R extends CheckedPermission<infer A> ? A : undefined;

type StaticOr<S, D> = S extends TSchema ? Static<S> : D;
type Empty = Record<string, never>;

/** What a handler gets. */
export interface RouteContext<P, Q, B, A = undefined> {
  params: P;
  query: Q;
  body: B;
  /** The authenticated user or token (`user@realm!token`); empty on `'anybody'` routes. */
  authId: string;
  /** Permission snapshot taken for this request. */
  userInfo: UserInfo;
  server: ServerContext;
  /**
   * The outcome of the route's `CheckedPermission` (for `ownerChecked`: full access or own groups
   * only, and the one ownership helper); undefined for other permissions.
   */
  access: A;
  request: FastifyRequest;
  reply: FastifyReply;
  /** Add a result attribute beside `data` (PBS rpcenv attributes such as `digest`, `total`). */
  setAttribute(name: string, value: unknown): void;
}

export interface RouteSpec<
  P extends TSchema | undefined,
  Q extends TSchema | undefined,
  B extends TSchema | undefined,
  R extends RoutePermission = RoutePermission,
> {
  method: HttpMethod;
  /** Below `/api2/json`, fastify syntax (`/admin/datastore/:store/status`). */
  path: string;
  params?: P;
  query?: Q;
  body?: B;
  /** Schema of `data` (documentation, and checked by tests; not enforced at runtime). */
  returns?: TSchema;
  permission: R;
  /** PBS runs protected calls in its privileged daemon; Stowage has one process, so this is documentation. */
  protected?: boolean;
  description: string;
  /**
   * Returns `data` of the `{"data": ...}` envelope. A handler that sends its own reply (streams,
   * downloads) returns `ctx.reply`.
   */
  handler(
    ctx: RouteContext<StaticOr<P, Empty>, StaticOr<Q, Empty>, StaticOr<B, Empty>, AccessOf<R>>,
  ): unknown;
}

// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type AnyRoute = RouteSpec<any, any, any, any>;

/** Declare a route; the identity function, there for type inference of the handler's context. */
export function defineRoute<
  P extends TSchema | undefined = undefined,
  Q extends TSchema | undefined = undefined,
  B extends TSchema | undefined = undefined,
  R extends RoutePermission = RoutePermission,
>(spec: RouteSpec<P, Q, B, R>): RouteSpec<P, Q, B, R> {
  return spec;
}
