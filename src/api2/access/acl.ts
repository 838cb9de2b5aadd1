/**
 * `GET/PUT /access/acl` (PBS `src/api2/access/acl.rs`), with PBS's parameter names: `path`,
 * `role`, `auth-id`, `group`, `propagate` (default true), `delete`, `digest`.
 */
import { Type } from 'typebox';
import { BadRequestError, ForbiddenError } from '../../errors.js';
import { readAclConfig, requireAclPath, splitAclPath, updateAclConfig } from '../../config/acl-config.js';
import { authIdUser, isTokenId, readUserConfig } from '../../config/user-config.js';
import { defineRoute, filtered, type AnyRoute } from '../../http/route.js';
import { AclPathSchema, AuthidSchema, DigestSchema, RoleSchema } from '../../http/schemas.js';

export const routes: AnyRoute[] = [
  defineRoute({
    method: 'GET',
    path: '/access/acl',
    query: Type.Object({ path: Type.Optional(AclPathSchema), exact: Type.Optional(Type.Boolean()) }),
    permission: filtered(
      "with Sys.Audit on /access/acl all entries, else only the caller's own and its tokens'",
    ),
    description:
      "Read ACL entries. With Sys.Audit on /access/acl all entries; otherwise only the caller's own (for a user, also those of its tokens). `path` limits to that path and below, `exact` to that path only.",
    returns: Type.Array(
      Type.Object({
        path: Type.String(),
        ugid: Type.String(),
        ugid_type: Type.String(),
        propagate: Type.Boolean(),
        roleid: Type.String(),
      }),
    ),
    handler: ({ query, authId, userInfo, server, setAttribute }) => {
      const { tree, digest } = readAclConfig(server.paths.configDir);
      const all = userInfo.hasPrivs(authId, '/access/acl', ['Sys.Audit']);
      const mine = (ugid: string) => ugid === authId || (!isTokenId(authId) && authIdUser(ugid) === authId);
      const want = query.path === undefined ? undefined : splitAclPath(query.path).join('/');
      setAttribute('digest', digest);
      return tree.list().filter((e) => {
        if (!all && (e.ugid_type !== 'user' || !mine(e.ugid))) return false;
        if (want === undefined) return true;
        const p = splitAclPath(e.path).join('/');
        return query.exact ? p === want : want === '' || p === want || p.startsWith(`${want}/`);
      });
    },
  }),
  defineRoute({
    method: 'PUT',
    path: '/access/acl',
    body: Type.Object({
      path: AclPathSchema,
      role: RoleSchema,
      propagate: Type.Optional(Type.Boolean()),
      'auth-id': Type.Optional(AuthidSchema),
      group: Type.Optional(Type.String()),
      delete: Type.Optional(Type.Boolean()),
      digest: Type.Optional(DigestSchema),
    }),
    permission: filtered(
      "Permissions.Modify on /access/acl, else only the ACL of the caller's own API tokens",
    ),
    protected: true,
    description:
      "Update the ACL. Needs Permissions.Modify on /access/acl; without it a user may only change the ACL of its own API tokens (whose privileges stay capped by the user's own).",
    handler: async ({ body, authId, userInfo, server }) => {
      const target = body['auth-id'];
      if (body.group !== undefined) {
        throw new BadRequestError(
          "parameter verification failed - 'group': groups are currently not supported",
        );
      }
      if (target === undefined) {
        throw new BadRequestError(
          "parameter verification failed - 'auth-id': either 'auth-id' or 'group' needs to be set",
        );
      }
      if (!userInfo.hasPrivs(authId, '/access/acl', ['Permissions.Modify'])) {
        const ownToken = !isTokenId(authId) && isTokenId(target) && authIdUser(target) === authId;
        if (!ownToken)
          throw new ForbiddenError('permission check failed - missing Permissions.Modify on /access/acl');
      }
      requireAclPath(body.path);
      if (!body.delete) {
        const { config } = readUserConfig(server.paths.configDir);
        const exists = isTokenId(target) ? config.tokens.has(target) : config.users.has(target);
        if (!exists) {
          throw new BadRequestError(
            `parameter verification failed - 'auth-id': no such ${isTokenId(target) ? 'API token' : 'user'} '${target}'`,
          );
        }
      }
      await updateAclConfig(
        server.paths.configDir,
        (tree) => {
          if (body.delete) tree.delete(body.path, target, body.role);
          else tree.insert(body.path, target, body.role, body.propagate ?? true);
        },
        body.digest,
      );
      return null;
    },
  }),
];
