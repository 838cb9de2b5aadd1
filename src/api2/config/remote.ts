/**
 * `/config/remote` and `/config/remote/{name}` (PBS `src/api2/config/remote.rs`): the remotes sync
 * talks to, in remote.cfg. The password (or token secret) is taken in plain text and never
 * returned. Listing shows the remotes the caller has Remote.Audit on; reading one needs
 * Remote.Audit on `/remote/{name}`, creating Remote.Modify on `/remote`, changing or removing
 * Remote.Modify on `/remote/{name}`. A remote used by a sync job cannot be removed.
 *
 * `/config/remote/{name}/scan[/{store}/namespaces|groups|snapshots]` list what the remote offers,
 * through its own API as the remote's user sees it (Remote.Audit); `snapshots` is a Stowage
 * extension.
 */
import { Type } from 'typebox';
import { BadRequestError, NotFoundError } from '../../errors.js';
import { remoteConfig, remoteInfo, type RemoteConfig } from '../../config/remote-config.js';
import { syncJobConfig } from '../../config/job-config.js';
import { defineRoute, filtered, type AnyRoute } from '../../http/route.js';
import type { ServerContext } from '../../http/context.js';
import { AuthidSchema, CommentSchema, DigestSchema } from '../../http/schemas.js';
import { connectRemote } from '../../sync/remote-client.js';
import { BackupIdSchema, BackupTypeSchema, NsSchema, StoreSchema } from '../admin/datastore/common.js';
import { RemoteIdSchema } from '../pull.js';

const NameParams = Type.Object({ name: RemoteIdSchema });

const RemoteFields = {
  host: Type.String({ maxLength: 255, description: 'DNS name or IP address.' }),
  port: Type.Integer({ minimum: 1, maximum: 65535, description: 'Port (default 8007).' }),
  'auth-id': AuthidSchema,
  fingerprint: Type.String({ maxLength: 95, description: 'SHA-256 certificate fingerprint (aa:bb:...).' }),
  comment: CommentSchema,
  'use-node-proxy': Type.Boolean({
    description: 'Accepted for PBS compatibility; this version uses no proxy.',
  }),
};
const PasswordSchema = Type.String({
  minLength: 1,
  maxLength: 1024,
  description: 'Password or API token secret (plain text; stored base64-encoded, never returned).',
});
const DELETABLE = ['comment', 'fingerprint', 'port', 'use-node-proxy'] as const;

const RemoteInfoSchema = Type.Object({
  name: Type.String(),
  host: Type.String(),
  port: Type.Optional(Type.Integer()),
  'auth-id': Type.String(),
  fingerprint: Type.Optional(Type.String()),
  comment: Type.Optional(Type.String()),
  'use-node-proxy': Type.Optional(Type.Boolean()),
});

function getRemote(server: ServerContext, name: string): RemoteConfig {
  const remote = remoteConfig(server.paths.configDir).get(name);
  if (!remote) throw new NotFoundError(`remote '${name}' does not exist.`);
  return remote;
}

/** The remote's API as its configured user, for the scan calls. */
async function remoteApi(server: ServerContext, name: string) {
  return connectRemote(getRemote(server, name));
}

export const routes: AnyRoute[] = [
  defineRoute({
    method: 'GET',
    path: '/config/remote',
    returns: Type.Array(RemoteInfoSchema),
    permission: filtered('only the remotes the caller has Remote.Audit on'),
    description: 'List the configured remotes (without their passwords), with the `digest` attribute.',
    handler: ({ authId, userInfo, server, setAttribute }) => {
      const { remotes, digest } = remoteConfig(server.paths.configDir).read();
      setAttribute('digest', digest);
      return [...remotes.values()]
        .filter((r) => userInfo.hasPrivs(authId, `/remote/${r.name}`, ['Remote.Audit']))
        .map(remoteInfo);
    },
  }),
  defineRoute({
    method: 'POST',
    path: '/config/remote',
    body: Type.Object({
      name: RemoteIdSchema,
      host: RemoteFields.host,
      'auth-id': RemoteFields['auth-id'],
      password: PasswordSchema,
      port: Type.Optional(RemoteFields.port),
      fingerprint: Type.Optional(RemoteFields.fingerprint),
      comment: Type.Optional(RemoteFields.comment),
      'use-node-proxy': Type.Optional(RemoteFields['use-node-proxy']),
    }),
    permission: { path: '/remote', privs: ['Remote.Modify'] },
    protected: true,
    description: 'Create a remote.',
    handler: async ({ body, server }) => {
      await remoteConfig(server.paths.configDir).update((remotes) => {
        if (remotes.has(body.name)) {
          throw new BadRequestError(`remote '${body.name}' already exists.`, { param: 'name' });
        }
        remotes.set(body.name, { ...body });
      });
      return null;
    },
  }),
  defineRoute({
    method: 'GET',
    path: '/config/remote/:name',
    params: NameParams,
    returns: RemoteInfoSchema,
    permission: { path: '/remote/{name}', privs: ['Remote.Audit'] },
    description: 'Read a remote (without its password), with the `digest` attribute.',
    handler: ({ params, server, setAttribute }) => {
      const { remotes, digest } = remoteConfig(server.paths.configDir).read();
      const remote = remotes.get(params.name);
      if (!remote) throw new NotFoundError(`remote '${params.name}' does not exist.`);
      setAttribute('digest', digest);
      return remoteInfo(remote);
    },
  }),
  defineRoute({
    method: 'PUT',
    path: '/config/remote/:name',
    params: NameParams,
    body: Type.Object({
      host: Type.Optional(RemoteFields.host),
      port: Type.Optional(RemoteFields.port),
      'auth-id': Type.Optional(RemoteFields['auth-id']),
      password: Type.Optional(PasswordSchema),
      fingerprint: Type.Optional(RemoteFields.fingerprint),
      comment: Type.Optional(RemoteFields.comment),
      'use-node-proxy': Type.Optional(RemoteFields['use-node-proxy']),
      delete: Type.Optional(Type.Array(Type.Union(DELETABLE.map((k) => Type.Literal(k))))),
      digest: Type.Optional(DigestSchema),
    }),
    permission: { path: '/remote/{name}', privs: ['Remote.Modify'] },
    protected: true,
    description: 'Update a remote: set fields, `delete` others (comment, fingerprint, port, use-node-proxy).',
    handler: async ({ params, body, server }) => {
      const { delete: del, digest, ...fields } = body;
      await remoteConfig(server.paths.configDir).update(
        (remotes) => {
          const remote = remotes.get(params.name);
          if (!remote) throw new NotFoundError(`remote '${params.name}' does not exist.`);
          for (const key of del ?? []) delete remote[key];
          const comment = fields.comment?.trim();
          Object.assign(remote, fields);
          // PBS: an empty comment removes it
          if (comment !== undefined && comment === '') delete remote.comment;
        },
        { ...(digest !== undefined && { digest }) },
      );
      return null;
    },
  }),
  defineRoute({
    method: 'DELETE',
    path: '/config/remote/:name',
    params: NameParams,
    query: Type.Object({ digest: Type.Optional(DigestSchema) }),
    permission: { path: '/remote/{name}', privs: ['Remote.Modify'] },
    protected: true,
    description: 'Remove a remote; refused while a sync job uses it.',
    handler: async ({ params, query, server }) => {
      for (const job of syncJobConfig(server.paths.configDir).read().jobs.values()) {
        if (job.remote === params.name) {
          throw new BadRequestError(
            `remote '${params.name}' is used by sync job '${job.id}' (datastore '${job.store}')`,
            { param: 'name' },
          );
        }
      }
      await remoteConfig(server.paths.configDir).update(
        (remotes) => {
          if (!remotes.delete(params.name))
            throw new NotFoundError(`remote '${params.name}' does not exist.`);
        },
        { ...(query.digest !== undefined && { digest: query.digest }) },
      );
      return null;
    },
  }),
  defineRoute({
    method: 'GET',
    path: '/config/remote/:name/scan',
    params: NameParams,
    permission: { path: '/remote/{name}', privs: ['Remote.Audit'] },
    description: "The remote's datastores, as its `admin/datastore` answers the remote's user.",
    handler: async ({ params, server }) =>
      (await remoteApi(server, params.name)).call('GET', '/admin/datastore'),
  }),
  defineRoute({
    method: 'GET',
    path: '/config/remote/:name/scan/:store/namespaces',
    params: Type.Object({ name: RemoteIdSchema, store: StoreSchema }),
    permission: { path: '/remote/{name}', privs: ['Remote.Audit'] },
    description: "The namespaces of one of the remote's datastores.",
    handler: async ({ params, server }) =>
      (await remoteApi(server, params.name)).call(
        'GET',
        `/admin/datastore/${encodeURIComponent(params.store)}/namespace`,
      ),
  }),
  defineRoute({
    method: 'GET',
    path: '/config/remote/:name/scan/:store/groups',
    params: Type.Object({ name: RemoteIdSchema, store: StoreSchema }),
    query: Type.Object({ namespace: Type.Optional(NsSchema) }),
    permission: { path: '/remote/{name}', privs: ['Remote.Audit'] },
    description: "The backup groups of one of the remote's datastores (in `namespace`).",
    handler: async ({ params, query, server }) =>
      (await remoteApi(server, params.name)).call(
        'GET',
        `/admin/datastore/${encodeURIComponent(params.store)}/groups`,
        query.namespace ? { ns: query.namespace } : {},
      ),
  }),
  defineRoute({
    method: 'GET',
    path: '/config/remote/:name/scan/:store/snapshots',
    params: Type.Object({ name: RemoteIdSchema, store: StoreSchema }),
    query: Type.Object({
      namespace: Type.Optional(NsSchema),
      'backup-type': Type.Optional(BackupTypeSchema),
      'backup-id': Type.Optional(BackupIdSchema),
    }),
    permission: { path: '/remote/{name}', privs: ['Remote.Audit'] },
    description:
      "(Stowage extension) The snapshots of one of the remote's datastores, as its `snapshots` call " +
      'answers them (in `namespace`, of one group with `backup-type` and `backup-id`).',
    handler: async ({ params, query, server }) =>
      (await remoteApi(server, params.name)).call(
        'GET',
        `/admin/datastore/${encodeURIComponent(params.store)}/snapshots`,
        {
          ...(query.namespace && { ns: query.namespace }),
          ...(query['backup-type'] && { 'backup-type': query['backup-type'] }),
          ...(query['backup-id'] && { 'backup-id': query['backup-id'] }),
        },
      ),
  }),
];
