/**
 * `/config/s3` and `/config/s3/{id}` (PBS 4 `src/api2/config/s3.rs`): the S3 endpoints in s3.cfg.
 * The secret key is taken in plain text and never returned. Privileges as PBS: listing shows the
 * endpoints the caller has Sys.Audit on (`/system/s3-endpoint/{id}`), reading one needs Sys.Audit
 * there, creating Sys.Modify on `/system/s3-endpoint`, changing or removing Sys.Modify on
 * `/system/s3-endpoint/{id}`.
 *
 * `GET /config/s3/{id}/list-buckets` lists the buckets the endpoint's credentials see (Sys.Audit
 * on `/`, as PBS). An endpoint a datastore's `backend` names (a PBS 4 S3 datastore in
 * datastore.cfg) cannot be removed.
 */
import { ListBucketsCommand } from '@aws-sdk/client-s3';
import { Type } from 'typebox';
import { parseDatastoreBackend } from '../../config/datastore-config.js';
import { BadRequestError, NotFoundError } from '../../errors.js';
import type { ServerContext } from '../../http/context.js';
import { createS3Client, s3ClientOptionsFor, s3RequestError } from '../../s3/s3-client.js';
import {
  PROVIDER_QUIRKS,
  s3EndpointConfig,
  s3EndpointInfo,
  type S3EndpointConfig,
} from '../../config/s3-config.js';
import { defineRoute, filtered, type AnyRoute } from '../../http/route.js';
import { DigestSchema } from '../../http/schemas.js';

/** PBS `S3_CLIENT_ID_SCHEMA`: a safe id of 3 to 32 characters. */
export const S3EndpointIdSchema = Type.String({
  pattern: '^[A-Za-z0-9_][A-Za-z0-9._\\-]*$',
  minLength: 3,
  maxLength: 32,
});
const IdParams = Type.Object({ id: S3EndpointIdSchema });
const HumanByteSchema = Type.String({
  maxLength: 64,
  description: 'A byte size, e.g. 10 MiB (per second for rates).',
});

const Fields = {
  endpoint: Type.String({
    maxLength: 255,
    description: 'Host name of the S3 API (may hold {{bucket}}. and {{region}} templates) or an IP address.',
  }),
  port: Type.Integer({ minimum: 1, maximum: 65535, description: 'Port (default 443).' }),
  region: Type.String({ maxLength: 32, description: 'Region (e.g. us-east-1).' }),
  fingerprint: Type.String({
    maxLength: 95,
    description: 'SHA-256 fingerprint of a self-signed certificate.',
  }),
  'access-key': Type.String({ minLength: 1, maxLength: 256, description: 'Access key.' }),
  'path-style': Type.Boolean({ description: 'Path-style bucket addressing instead of virtual hosts.' }),
  'put-rate-limit': Type.Integer({ minimum: 1, description: 'PUT requests per second at most.' }),
  'provider-quirks': Type.Array(Type.Union(PROVIDER_QUIRKS.map((q) => Type.Literal(q))), {
    description: 'What the store lacks: skip-if-none-match-header, delete-objects-via-delete-object.',
  }),
  'rate-in': HumanByteSchema,
  'burst-in': HumanByteSchema,
  'rate-out': HumanByteSchema,
  'burst-out': HumanByteSchema,
};
/** The settings that may be left out, on creation as on update. */
const OptionalSettings = {
  port: Type.Optional(Fields.port),
  region: Type.Optional(Fields.region),
  fingerprint: Type.Optional(Fields.fingerprint),
  'path-style': Type.Optional(Fields['path-style']),
  'put-rate-limit': Type.Optional(Fields['put-rate-limit']),
  'provider-quirks': Type.Optional(Fields['provider-quirks']),
  'rate-in': Type.Optional(Fields['rate-in']),
  'burst-in': Type.Optional(Fields['burst-in']),
  'rate-out': Type.Optional(Fields['rate-out']),
  'burst-out': Type.Optional(Fields['burst-out']),
};
const SecretKeySchema = Type.String({
  minLength: 1,
  maxLength: 256,
  description: 'Secret key (kept in s3.cfg, which is not world-readable; never returned).',
});
const DELETABLE = [
  'port',
  'region',
  'fingerprint',
  'path-style',
  'rate-in',
  'burst-in',
  'rate-out',
  'burst-out',
  'provider-quirks',
] as const;

const S3EndpointInfoSchema = Type.Object({
  id: Type.String(),
  endpoint: Type.String(),
  port: Type.Optional(Type.Integer()),
  region: Type.Optional(Type.String()),
  fingerprint: Type.Optional(Type.String()),
  'access-key': Type.String(),
  'path-style': Type.Optional(Type.Boolean()),
  'put-rate-limit': Type.Optional(Type.Integer()),
  'provider-quirks': Type.Optional(Type.Array(Type.String())),
  'rate-in': Type.Optional(Type.String()),
  'burst-in': Type.Optional(Type.String()),
  'rate-out': Type.Optional(Type.String()),
  'burst-out': Type.Optional(Type.String()),
});

const notFound = (id: string) => new NotFoundError(`s3 client config '${id}' do not exist.`);

/** PBS `S3_BUCKET_NAME_SCHEMA` (its prefix and suffix exclusions aside). */
export const BucketNameSchema = Type.String({
  pattern: '^[a-z0-9]([a-z0-9\\-]*[a-z0-9])?$',
  minLength: 3,
  maxLength: 63,
  description: 'Bucket name.',
});

/** One endpoint with its secret, or the API's 404. */
export function s3EndpointOrNotFound(server: ServerContext, id: string): S3EndpointConfig {
  const conf = s3EndpointConfig(server.paths.configDir).get(id);
  if (!conf) throw notFound(id);
  return conf;
}

export const routes: AnyRoute[] = [
  defineRoute({
    method: 'GET',
    path: '/config/s3',
    returns: Type.Array(S3EndpointInfoSchema),
    permission: filtered('only the endpoints the caller has Sys.Audit on'),
    description: 'List the S3 endpoints (without their secret keys), with the `digest` attribute.',
    handler: ({ authId, userInfo, server, setAttribute }) => {
      const { jobs, digest } = s3EndpointConfig(server.paths.configDir).read();
      setAttribute('digest', digest);
      return [...jobs.values()]
        .filter((e) => userInfo.hasPrivs(authId, `/system/s3-endpoint/${e.id}`, ['Sys.Audit']))
        .map(s3EndpointInfo);
    },
  }),
  defineRoute({
    method: 'POST',
    path: '/config/s3',
    body: Type.Object({
      id: S3EndpointIdSchema,
      endpoint: Fields.endpoint,
      'access-key': Fields['access-key'],
      'secret-key': SecretKeySchema,
      ...OptionalSettings,
    }),
    permission: { path: '/system/s3-endpoint', privs: ['Sys.Modify'] },
    protected: true,
    description: 'Create an S3 endpoint configuration.',
    handler: async ({ body, server }) => {
      await s3EndpointConfig(server.paths.configDir).update((endpoints) => {
        if (endpoints.has(body.id)) {
          throw new BadRequestError(`s3 client config '${body.id}' already exists.`, { param: 'id' });
        }
        endpoints.set(body.id, { ...body } as S3EndpointConfig);
      });
      return null;
    },
  }),
  defineRoute({
    method: 'GET',
    path: '/config/s3/:id',
    params: IdParams,
    returns: S3EndpointInfoSchema,
    permission: { path: '/system/s3-endpoint/{id}', privs: ['Sys.Audit'] },
    description: 'Read an S3 endpoint configuration (without its secret key), with the `digest` attribute.',
    handler: ({ params, server, setAttribute }) => {
      const { jobs, digest } = s3EndpointConfig(server.paths.configDir).read();
      const endpoint = jobs.get(params.id);
      if (!endpoint) throw notFound(params.id);
      setAttribute('digest', digest);
      return s3EndpointInfo(endpoint);
    },
  }),
  defineRoute({
    method: 'PUT',
    path: '/config/s3/:id',
    params: IdParams,
    body: Type.Object({
      endpoint: Type.Optional(Fields.endpoint),
      'access-key': Type.Optional(Fields['access-key']),
      'secret-key': Type.Optional(SecretKeySchema),
      ...OptionalSettings,
      delete: Type.Optional(Type.Array(Type.Union(DELETABLE.map((k) => Type.Literal(k))))),
      digest: Type.Optional(DigestSchema),
    }),
    permission: { path: '/system/s3-endpoint/{id}', privs: ['Sys.Modify'] },
    protected: true,
    description: `Update an S3 endpoint configuration: set fields, \`delete\` others (${DELETABLE.join(', ')}).`,
    handler: async ({ params, body, server }) => {
      const { delete: del, digest, ...fields } = body;
      await s3EndpointConfig(server.paths.configDir).update(
        (endpoints) => {
          const endpoint = endpoints.get(params.id);
          if (!endpoint) throw notFound(params.id);
          for (const key of del ?? []) delete endpoint[key];
          Object.assign(endpoint, fields);
        },
        { ...(digest !== undefined && { digest }) },
      );
      return null;
    },
  }),
  defineRoute({
    method: 'GET',
    path: '/config/s3/:id/list-buckets',
    params: IdParams,
    returns: Type.Array(Type.Object({ name: Type.String() })),
    permission: { path: '/', privs: ['Sys.Audit'] },
    description: "List the buckets the endpoint's credentials can see.",
    handler: async ({ params, server }) => {
      const client = createS3Client(s3ClientOptionsFor(s3EndpointOrNotFound(server, params.id)));
      try {
        const res = await client.send(new ListBucketsCommand({}));
        return (res.Buckets ?? []).map((b) => ({ name: b.Name ?? '' }));
      } catch (err) {
        throw s3RequestError(`list buckets of '${params.id}'`, err);
      } finally {
        client.destroy();
      }
    },
  }),
  defineRoute({
    method: 'DELETE',
    path: '/config/s3/:id',
    params: IdParams,
    query: Type.Object({ digest: Type.Optional(DigestSchema) }),
    permission: { path: '/system/s3-endpoint/{id}', privs: ['Sys.Modify'] },
    protected: true,
    description: 'Remove an S3 endpoint configuration; refused while a datastore uses it.',
    handler: async ({ params, query, server }) => {
      for (const store of server.datastores.config.read().stores.values()) {
        // an unreadable backend is reported where that datastore is used, not here
        let backend;
        try {
          backend = parseDatastoreBackend(store);
        } catch {
          continue;
        }
        if (backend.type === 's3' && backend.client === params.id) {
          throw new BadRequestError(`in-use by datastore ${store.name}`, { param: 'id' });
        }
      }
      await s3EndpointConfig(server.paths.configDir).update(
        (endpoints) => {
          if (!endpoints.delete(params.id)) throw notFound(params.id);
        },
        { ...(query.digest !== undefined && { digest: query.digest }) },
      );
      return null;
    },
  }),
];
