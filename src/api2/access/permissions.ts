/**
 * `GET /access/permissions` (PBS `list_permissions` in `src/api2/access/mod.rs`): the effective
 * privileges of the caller, or of another user or token, per ACL path, as
 * `{ "/datastore/s1": { "Datastore.Backup": true } }` where the flag says whether the privilege
 * propagates to the paths below.
 */
import { Type } from 'typebox';
import { ForbiddenError } from '../../errors.js';
import { authIdUser, isTokenId } from '../../config/user-config.js';
import type { UserInfo } from '../../http/permissions.js';
import { defineRoute, filtered, type AnyRoute } from '../../http/route.js';
import { AclPathSchema, AuthidSchema } from '../../http/schemas.js';

/** Paths PBS always reports (when the auth id holds anything there), even without an ACL entry. */
const DEFAULT_PATHS = ['/', '/access', '/datastore', '/remote', '/system'];

/**
 * PBS's rule for querying someone else: Sys.Audit on /access, or a user asking about one of its
 * own API tokens.
 */
function checkMayList(info: UserInfo, caller: string, target: string): void {
  if (target === caller) return;
  if (info.hasPrivs(caller, '/access', ['Sys.Audit'])) return;
  if (isTokenId(target) && !isTokenId(caller) && authIdUser(target) === caller) return;
  throw new ForbiddenError(
    `permission check failed - missing Sys.Audit on /access: not allowed to list permissions of ${target}`,
  );
}

export const routes: AnyRoute[] = [
  defineRoute({
    method: 'GET',
    path: '/access/permissions',
    query: Type.Object({
      'auth-id': Type.Optional(AuthidSchema),
      path: Type.Optional(AclPathSchema),
    }),
    permission: filtered(
      "own privileges; another auth id's with Sys.Audit on /access or when it is an own token",
    ),
    description:
      "List the effective privileges of the caller, or of `auth-id` (needs Sys.Audit on /access unless it is the caller or one of the calling user's own tokens), on `path` or else on every path of the ACL tree plus /, /access, /datastore, /remote and /system. Paths where it holds nothing are left out.",
    returns: Type.Record(Type.String(), Type.Record(Type.String(), Type.Boolean())),
    handler: ({ query, authId, userInfo }) => {
      const target = query['auth-id'] ?? authId;
      checkMayList(userInfo, authId, target);
      // An explicit path is reported as the caller spelled it, as PBS does.
      const paths =
        query.path !== undefined
          ? [query.path]
          : [...new Set([...DEFAULT_PATHS, ...userInfo.acl.nodePaths()])];
      const result: Record<string, Record<string, boolean>> = {};
      for (const path of paths.sort()) {
        const privs = userInfo.privsDetails(target, path);
        // no entry where it holds nothing: the list must not reveal ACL paths of others
        if (privs.size > 0) result[path] = Object.fromEntries(privs);
      }
      return result;
    },
  }),
];
