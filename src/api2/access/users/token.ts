/**
 * API tokens, `/access/users/{userid}/token[/{token-name}]` (PBS `src/api2/access/user.rs`).
 * The URL parameter is called `tokenname` here because fastify's router reads `-` as a separator
 * in parameter names. A user manages its own tokens without privileges; a token's effective
 * privileges never exceed its owner's (src/http/permissions.ts).
 */
import { Type } from 'typebox';
import { ERR_TOKEN_EXISTS, NotFoundError } from '../../../errors.js';
import { updateAclConfig } from '../../../config/acl-config.js';
import { deleteTokenSecrets, generateTokenSecret } from '../../../config/token-config.js';
import { readUserConfig, updateUserConfig } from '../../../config/user-config.js';
import { defineRoute, type AnyRoute } from '../../../http/route.js';
import {
  CommentSchema,
  DigestSchema,
  EnableSchema,
  ExpireSchema,
  TokenNameSchema,
  UseridSchema,
} from '../../../http/schemas.js';
import { tokenView } from '../users.js';

const TokenParams = Type.Object({ userid: UseridSchema, tokenname: TokenNameSchema });
const TokenFields = {
  comment: Type.Optional(CommentSchema),
  enable: Type.Optional(EnableSchema),
  expire: Type.Optional(ExpireSchema),
};
const readPerm = { anyOf: [{ path: '/access/users', privs: ['Sys.Audit'] }, { userParam: 'userid' }] };
const writePerm = {
  anyOf: [{ path: '/access/users', privs: ['Permissions.Modify'] }, { userParam: 'userid' }],
};

export const routes: AnyRoute[] = [
  defineRoute({
    method: 'GET',
    path: '/access/users/:userid/token',
    params: Type.Object({ userid: UseridSchema }),
    permission: readPerm,
    description:
      "List a user's API tokens. Needs Sys.Audit on /access/users unless it is the caller's own user.",
    handler: ({ params, server, setAttribute }) => {
      const { config, digest } = readUserConfig(server.paths.configDir);
      if (!config.users.has(params.userid))
        throw new NotFoundError(`user '${params.userid}' does not exist.`);
      setAttribute('digest', digest);
      return [...config.tokens.values()]
        .filter((t) => t.tokenid.startsWith(`${params.userid}!`))
        .map(tokenView);
    },
  }),
  defineRoute({
    method: 'GET',
    path: '/access/users/:userid/token/:tokenname',
    params: TokenParams,
    permission: readPerm,
    description: "Read one API token. Needs Sys.Audit on /access/users unless it is the caller's own user.",
    handler: ({ params, server, setAttribute }) => {
      const { config, digest } = readUserConfig(server.paths.configDir);
      const token = config.tokens.get(`${params.userid}!${params.tokenname}`);
      if (!token) throw new NotFoundError(`no such API token '${params.userid}!${params.tokenname}'`);
      setAttribute('digest', digest);
      return tokenView(token);
    },
  }),
  defineRoute({
    method: 'POST',
    path: '/access/users/:userid/token/:tokenname',
    params: TokenParams,
    body: Type.Object({ ...TokenFields, digest: Type.Optional(DigestSchema) }),
    permission: writePerm,
    protected: true,
    description:
      "Create an API token and return its secret, once. Needs Permissions.Modify on /access/users unless it is the caller's own user.",
    returns: Type.Object({ tokenid: Type.String(), value: Type.String() }),
    handler: async ({ params, body, server }) => {
      const tokenid = `${params.userid}!${params.tokenname}`;
      const { digest, ...fields } = body;
      await updateUserConfig(
        server.paths.configDir,
        (cfg) => {
          if (!cfg.users.has(params.userid))
            throw new NotFoundError(`user '${params.userid}' does not exist.`);
          if (cfg.tokens.has(tokenid)) throw ERR_TOKEN_EXISTS(tokenid);
          cfg.tokens.set(tokenid, { tokenid, ...fields });
        },
        digest,
      );
      const value = await generateTokenSecret(server.paths.configDir, tokenid);
      return { tokenid, value };
    },
  }),
  defineRoute({
    method: 'PUT',
    path: '/access/users/:userid/token/:tokenname',
    params: TokenParams,
    body: Type.Object({
      ...TokenFields,
      regenerate: Type.Optional(Type.Boolean()),
      delete: Type.Optional(Type.Array(Type.Literal('comment'))),
      digest: Type.Optional(DigestSchema),
    }),
    permission: writePerm,
    protected: true,
    description:
      "Update an API token; with `regenerate` it gets a new secret, returned once. Needs Permissions.Modify on /access/users unless it is the caller's own user.",
    handler: async ({ params, body, server }) => {
      const tokenid = `${params.userid}!${params.tokenname}`;
      const { digest, regenerate, delete: del, ...fields } = body;
      await updateUserConfig(
        server.paths.configDir,
        (cfg) => {
          const token = cfg.tokens.get(tokenid);
          if (!token) throw new NotFoundError(`no such API token '${tokenid}'`);
          for (const k of del ?? []) delete token[k];
          Object.assign(token, fields);
        },
        digest,
      );
      if (!regenerate) return null;
      return { tokenid, value: await generateTokenSecret(server.paths.configDir, tokenid) };
    },
  }),
  defineRoute({
    method: 'DELETE',
    path: '/access/users/:userid/token/:tokenname',
    params: TokenParams,
    query: Type.Object({ digest: Type.Optional(DigestSchema) }),
    permission: writePerm,
    protected: true,
    description:
      "Delete an API token with its secret and ACL entries. Needs Permissions.Modify on /access/users unless it is the caller's own user.",
    handler: async ({ params, query, server }) => {
      const tokenid = `${params.userid}!${params.tokenname}`;
      const { configDir } = server.paths;
      await updateUserConfig(
        configDir,
        (cfg) => {
          if (!cfg.tokens.delete(tokenid)) throw new NotFoundError(`no such API token '${tokenid}'`);
        },
        query.digest,
      );
      await deleteTokenSecrets(configDir, [tokenid]);
      await updateAclConfig(configDir, (tree) => tree.deleteAuthId(tokenid));
      return null;
    },
  }),
];
