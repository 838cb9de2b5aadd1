/**
 * Every API route under `/api2/json`, in one array. Add a subtree's route list here (the
 * datastore endpoints: `admin/`, `config/`, `status/`, ...); `registerRoutes` checks each route
 * declares a permission and that no method+path is registered twice.
 */
import type { AnyRoute } from '../http/route.js';
import { routes as access } from './access/index.js';
import { routes as adminDatastore } from './admin/datastore/index.js';
import { routes as adminGc } from './admin/gc.js';
import { routes as adminPrune } from './admin/prune.js';
import { routes as adminVerify } from './admin/verify.js';
import { routes as adminSync } from './admin/sync.js';
import { routes as configSync } from './config/sync.js';
import { routes as configRemote } from './config/remote.js';
import { routes as configS3 } from './config/s3.js';
import { routes as adminS3 } from './admin/s3.js';
import { routes as configDatastore } from './config/datastore.js';
import { routes as configPrune } from './config/prune.js';
import { routes as configVerify } from './config/verify.js';
import { routes as configMaintenanceWindow } from './config/maintenance-window.js';
import { routes as configNotifications } from './config/notifications.js';
import { routes as nodes } from './nodes/index.js';
import { routes as protocolPaths } from './protocol-paths.js';
import { routes as pull } from './pull.js';
import { routes as push } from './push.js';
import { routes as status } from './status/index.js';
import { routes as cluster } from './cluster/index.js';
import { routes as version } from './version.js';

export const apiRoutes: AnyRoute[] = [
  ...version,
  ...access,
  ...nodes,
  ...adminDatastore,
  ...configDatastore,
  ...status,
  ...cluster,
  ...configPrune,
  ...configVerify,
  ...configMaintenanceWindow,
  ...configNotifications,
  ...adminPrune,
  ...adminVerify,
  ...adminGc,
  ...configRemote,
  ...configS3,
  ...adminS3,
  ...configSync,
  ...adminSync,
  ...pull,
  ...push,
  ...protocolPaths,
];
