/**
 * `PUT /admin/datastore/{store}/s3-refresh` (PBS 4 `s3_refresh` in `src/api2/admin/datastore.rs`):
 * refill an S3 datastore's local cache from its bucket as an `s3-refresh` task answering its
 * UPID; Datastore.Modify on the store as PBS. See src/maintenance/s3-refresh.ts.
 */
import { Type } from 'typebox';
import { defineRoute, type AnyRoute } from '../../../http/route.js';
import { startS3Refresh } from '../../../maintenance/s3-refresh.js';
import { StoreParams } from './common.js';

export const routes: AnyRoute[] = [
  defineRoute({
    method: 'PUT',
    path: '/admin/datastore/:store/s3-refresh',
    params: StoreParams,
    permission: { path: '/datastore/{store}', privs: ['Datastore.Modify'] },
    protected: true,
    returns: Type.String({ description: 'UPID of the s3-refresh task.' }),
    description:
      "Refresh an S3 datastore's local cache from its bucket (PBS 4) as an `s3-refresh` task: set " +
      'maintenance mode `s3-refresh` (from this answer on reads and writes are refused), wait for the ' +
      'running operations, download the snapshot metadata (`<store>/.cnt/`) and replace the cached ' +
      'backup tree with it, then put back the mode set before (none as a rule). 400 for a datastore ' +
      'that is not on S3.',
    handler: ({ params, authId, server }) =>
      startS3Refresh(server.datastores, server.tasks, params.store, authId),
  }),
];
