/**
 * `PUT /admin/s3/{s3-endpoint-id}/check` (PBS 4 `src/api2/admin/s3.rs`): test an endpoint's
 * credentials and a bucket the way a datastore would use them: HEAD the bucket, then put, get and
 * delete a `.s3-client-test` object (under `store-prefix/` when given). Sys.Modify on `/` as PBS.
 * A failed step is a 400 naming it (`put object failed - ...`), with what the store answered.
 */
import {
  DeleteObjectCommand,
  GetObjectCommand,
  HeadBucketCommand,
  PutObjectCommand,
} from '@aws-sdk/client-s3';
import { Type } from 'typebox';
import { ERR_S3_CHECK_FAILED } from '../../errors.js';
import { defineRoute, type AnyRoute } from '../../http/route.js';
import { createS3Client, s3ClientOptionsFor, s3RequestError } from '../../s3/s3-client.js';
import { BucketNameSchema, S3EndpointIdSchema, s3EndpointOrNotFound } from '../config/s3.js';

export const routes: AnyRoute[] = [
  defineRoute({
    method: 'PUT',
    // the URL's `{s3-endpoint-id}`; the router's parameter names cannot hold a '-'
    path: '/admin/s3/:endpoint/check',
    params: Type.Object({ endpoint: S3EndpointIdSchema }),
    body: Type.Object({
      bucket: BucketNameSchema,
      'store-prefix': Type.Optional(
        Type.String({
          pattern: '^[A-Za-z0-9_][A-Za-z0-9._\\-]*$',
          maxLength: 64,
          description: 'Store prefix within the bucket (commonly the datastore name).',
        }),
      ),
    }),
    permission: { path: '/', privs: ['Sys.Modify'] },
    protected: true,
    description:
      "Check an S3 endpoint's credentials and bucket: head bucket, put, get and delete a test object.",
    handler: async ({ params, body, server }) => {
      const conf = s3EndpointOrNotFound(server, params.endpoint);
      const client = createS3Client(s3ClientOptionsFor(conf));
      const Bucket = body.bucket;
      const Key = body['store-prefix'] ? `${body['store-prefix']}/.s3-client-test` : '.s3-client-test';
      const step = async (name: string, what: string, fn: () => Promise<unknown>) => {
        try {
          await fn();
        } catch (err) {
          throw ERR_S3_CHECK_FAILED.withOptions({ cause: err }, name, s3RequestError(what, err).message);
        }
      };
      try {
        await step('head bucket', `HEAD ${Bucket}`, () => client.send(new HeadBucketCommand({ Bucket })));
        await step('put object', `PUT ${Bucket}/${Key}`, () =>
          client.send(new PutObjectCommand({ Bucket, Key, Body: Buffer.alloc(0) })),
        );
        await step('get object', `GET ${Bucket}/${Key}`, async () => {
          const res = await client.send(new GetObjectCommand({ Bucket, Key }));
          await res.Body?.transformToByteArray();
        });
        await step('delete object', `DELETE ${Bucket}/${Key}`, () =>
          client.send(new DeleteObjectCommand({ Bucket, Key })),
        );
      } finally {
        client.destroy();
      }
      return null;
    },
  }),
];
