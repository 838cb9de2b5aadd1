/** `/admin/datastore` and `/admin/datastore/{store}/...` (PBS `src/api2/admin/datastore.rs`). */
import type { AnyRoute } from '../../../http/route.js';
import { routes as activeOperations } from './active-operations.js';
import { routes as changeOwner } from './change-owner.js';
import { routes as content } from './content.js';
import { routes as fileRestore } from './file-restore.js';
import { routes as forceRelease } from './force-release.js';
import { routes as gc } from './gc.js';
import { routes as list } from './list.js';
import { routes as maintenanceHistory } from './maintenance-history.js';
import { routes as mount } from './mount.js';
import { routes as namespace } from './namespace.js';
import { routes as prune } from './prune.js';
import { routes as s3Refresh } from './s3-refresh.js';
import { routes as snapshotFiles } from './snapshot-files.js';
import { routes as status } from './status.js';
import { routes as verify } from './verify.js';

export const routes: AnyRoute[] = [
  ...list,
  ...status,
  ...activeOperations,
  ...maintenanceHistory,
  ...forceRelease,
  ...content,
  ...namespace,
  ...changeOwner,
  ...snapshotFiles,
  ...fileRestore,
  ...gc,
  ...prune,
  ...verify,
  ...mount,
  ...s3Refresh,
];
