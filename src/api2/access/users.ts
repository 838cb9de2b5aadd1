/**
 * `/access/users` and `/access/users/{userid}` (PBS `src/api2/access/user.rs`). Only realm `pbs`
 * users can be created (Stowage has no PAM); `root@pam` exists from the first start and cannot be
 * deleted. Self-service: a user may read itself; passwords change through `PUT /access/password`
 * (src/api2/access/password.ts).
 */
import { Type } from 'typebox';
import { BadRequestError, ERR_USER_EXISTS, ForbiddenError, NotFoundError } from '../../errors.js';
import { updateAclConfig } from '../../config/acl-config.js';
import { deleteTokenSecrets } from '../../config/token-config.js';
import {
  readUserConfig,
  SUPERUSER,
  updateUserConfig,
  type TokenEntry,
  type UserEntry,
} from '../../config/user-config.js';
import { deletePassword, setPassword } from '../../http/auth/password.js';
import { defineRoute, filtered, type AnyRoute } from '../../http/route.js';
import {
  CommentSchema,
  DigestSchema,
  EmailSchema,
  EnableSchema,
  ExpireSchema,
  NameSchema,
  PasswordSchema,
  UseridSchema,
} from '../../http/schemas.js';

const UserFields = {
  comment: Type.Optional(CommentSchema),
  enable: Type.Optional(EnableSchema),
  expire: Type.Optional(ExpireSchema),
  firstname: Type.Optional(NameSchema),
  lastname: Type.Optional(NameSchema),
  email: Type.Optional(EmailSchema),
};

const UserSchema = Type.Object({ userid: UseridSchema, ...UserFields });

/** API view of a user: PBS reports `enable` and `expire` with their defaults filled in. */
export function userView(u: UserEntry): Record<string, unknown> {
  return { ...u, enable: u.enable ?? true, expire: u.expire ?? 0 };
}

export function tokenView(t: TokenEntry): Record<string, unknown> {
  return { ...t, enable: t.enable ?? true, expire: t.expire ?? 0 };
}

function realmOf(userid: string): string {
  return userid.slice(userid.lastIndexOf('@') + 1);
}

export const routes: AnyRoute[] = [
  defineRoute({
    method: 'GET',
    path: '/access/users',
    permission: filtered(
      'with Sys.Audit on /access/users all users, else only the caller (a token: its owner)',
    ),
    description:
      'List users. Everyone with Sys.Audit on /access/users sees all users; others see only themselves (a token: its owner).',
    query: Type.Object({ include_tokens: Type.Optional(Type.Boolean()) }),
    returns: Type.Array(UserSchema),
    handler: ({ query, authId, userInfo, server, setAttribute }) => {
      const { config, digest } = readUserConfig(server.paths.configDir);
      const all = userInfo.hasPrivs(authId, '/access/users', ['Sys.Audit']);
      const self = authId.split('!')[0];
      setAttribute('digest', digest);
      return [...config.users.values()]
        .filter((u) => all || u.userid === self)
        .map((u) => ({
          ...userView(u),
          ...(query.include_tokens && {
            tokens: [...config.tokens.values()]
              .filter((t) => t.tokenid.startsWith(`${u.userid}!`))
              .map(tokenView),
          }),
        }));
    },
  }),
  defineRoute({
    method: 'POST',
    path: '/access/users',
    permission: { path: '/access/users', privs: ['Permissions.Modify'] },
    protected: true,
    description: "Create a user of realm 'pbs', optionally with a password.",
    body: Type.Object({ userid: UseridSchema, ...UserFields, password: Type.Optional(PasswordSchema) }),
    handler: async ({ body, server }) => {
      const { password, ...entry } = body;
      if (realmOf(entry.userid) !== 'pbs') {
        throw new BadRequestError(
          `parameter verification failed - 'userid': only users of realm 'pbs' can be created`,
        );
      }
      await updateUserConfig(server.paths.configDir, (cfg) => {
        if (cfg.users.has(entry.userid)) throw ERR_USER_EXISTS(entry.userid);
        cfg.users.set(entry.userid, entry);
      });
      if (password !== undefined) await setPassword(server.paths.configDir, entry.userid, password);
      return null;
    },
  }),
  defineRoute({
    method: 'GET',
    path: '/access/users/:userid',
    params: Type.Object({ userid: UseridSchema }),
    permission: { anyOf: [{ path: '/access/users', privs: ['Sys.Audit'] }, { userParam: 'userid' }] },
    description: 'Read a user. Needs Sys.Audit on /access/users unless it is the caller itself.',
    returns: UserSchema,
    handler: ({ params, server, setAttribute }) => {
      const { config, digest } = readUserConfig(server.paths.configDir);
      const user = config.users.get(params.userid);
      if (!user) throw new NotFoundError(`user '${params.userid}' does not exist.`);
      setAttribute('digest', digest);
      return userView(user);
    },
  }),
  defineRoute({
    method: 'PUT',
    path: '/access/users/:userid',
    params: Type.Object({ userid: UseridSchema }),
    body: Type.Object({
      ...UserFields,
      // accepted and ignored, as PBS 4 does: passwords change through PUT /access/password only,
      // which asks for the caller's current password
      password: Type.Optional(
        Type.String({ pattern: '^[^\\x00-\\x1f\\x7f]*$', minLength: 1, maxLength: 1024 }),
      ),
      delete: Type.Optional(
        Type.Array(
          Type.Union([
            Type.Literal('comment'),
            Type.Literal('firstname'),
            Type.Literal('lastname'),
            Type.Literal('email'),
          ]),
        ),
      ),
      digest: Type.Optional(DigestSchema),
    }),
    permission: {
      anyOf: [{ path: '/access/users', privs: ['Permissions.Modify'] }, { userParam: 'userid' }],
    },
    protected: true,
    description:
      'Update a user. Needs Permissions.Modify on /access/users (the user itself may call it but change nothing). `password` is ignored, as in PBS 4: use PUT /access/password.',
    handler: async ({ params, body, authId, userInfo, server }) => {
      const { password: _ignored, delete: del, digest, ...fields } = body;
      const admin = userInfo.hasPrivs(authId, '/access/users', ['Permissions.Modify']);
      if (!admin && (Object.keys(fields).length > 0 || (del?.length ?? 0) > 0)) {
        throw new ForbiddenError('permission check failed - missing Permissions.Modify on /access/users');
      }
      await updateUserConfig(
        server.paths.configDir,
        (cfg) => {
          const user = cfg.users.get(params.userid);
          if (!user) throw new NotFoundError(`user '${params.userid}' does not exist.`);
          for (const k of del ?? []) delete user[k];
          Object.assign(user, fields);
        },
        digest,
      );
      return null;
    },
  }),
  defineRoute({
    method: 'DELETE',
    path: '/access/users/:userid',
    params: Type.Object({ userid: UseridSchema }),
    query: Type.Object({ digest: Type.Optional(DigestSchema) }),
    permission: { path: '/access/users', privs: ['Permissions.Modify'] },
    protected: true,
    description: 'Delete a user with its API tokens, password and ACL entries. root@pam cannot be deleted.',
    handler: async ({ params, query, server }) => {
      if (params.userid === SUPERUSER) throw new BadRequestError(`user '${SUPERUSER}' cannot be deleted`);
      const { configDir } = server.paths;
      const tokenIds = await updateUserConfig(
        configDir,
        (cfg) => {
          if (!cfg.users.delete(params.userid))
            throw new NotFoundError(`user '${params.userid}' does not exist.`);
          const ids = [...cfg.tokens.keys()].filter((id) => id.startsWith(`${params.userid}!`));
          for (const id of ids) cfg.tokens.delete(id);
          return ids;
        },
        query.digest,
      );
      await deleteTokenSecrets(configDir, tokenIds);
      await deletePassword(configDir, params.userid);
      await updateAclConfig(configDir, (tree) => tree.deleteAuthId(params.userid));
      return null;
    },
  }),
];
