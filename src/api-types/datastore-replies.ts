/**
 * Answers of the datastore list, status and usage routes, as PBS shapes them: one declaration
 * for the route schemas (src/api2/) and the web UI's types (www/src/types.ts).
 */
import { Type, type Static } from 'typebox';

/** PBS `GarbageCollectionStatus`; field names are PBS's kebab-case wire names. */
export interface GarbageCollectionStatus {
  upid?: string;
  'index-file-count': number;
  'index-data-bytes': number;
  'disk-bytes': number;
  'disk-chunks': number;
  'removed-bytes': number;
  'removed-chunks': number;
  'pending-bytes': number;
  'pending-chunks': number;
  'removed-bad': number;
  'still-bad': number;
}

/** The GC status in a reply: passed through as stored (not re-validated on the way out). */
const GcStatusSchema = Type.Unsafe<GarbageCollectionStatus>(Type.Object({}));

/** PBS 4's `mount-status`: `mounted`/`notmounted` for a removable datastore, else `nonremovable`. */
export const MountStatusSchema = Type.Union([
  Type.Literal('mounted'),
  Type.Literal('notmounted'),
  Type.Literal('nonremovable'),
]);
export type MountStatus = Static<typeof MountStatusSchema>;

/** `next-maintenance-window` of the datastore list and status (epoch seconds). */
export const NextMaintenanceWindowSchema = Type.Object({
  id: Type.String(),
  start: Type.Integer(),
  end: Type.Integer(),
  type: Type.Union([Type.Literal('read-only'), Type.Literal('sealed'), Type.Literal('offline')]),
  message: Type.Optional(Type.String()),
  'drain-start': Type.Integer(),
  'drain-before': Type.Optional(Type.String()),
});

export type NextMaintenanceWindowReply = Static<typeof NextMaintenanceWindowSchema>;

/** A system hold as the API shows it (api-types/operations.ts `SystemHoldItem`). */
export const SystemHoldItemSchema = Type.Object({
  source: Type.String({ description: '`low-space` or `window:<id>`' }),
  type: Type.String({ description: 'read-only, sealed, offline or drain' }),
  message: Type.String(),
  since: Type.Integer({ description: 'epoch seconds' }),
  'auth-id': Type.Optional(Type.String()),
});

/** One entry of `GET /admin/datastore` (PBS 4 adds `mount-status` and `backend-type`). */
export const DatastoreListItemSchema = Type.Object({
  store: Type.String(),
  comment: Type.Optional(Type.String()),
  'mount-status': MountStatusSchema,
  /** Stowage: why a removable datastore's mounted device cannot be used (it failed); absent when usable. */
  unavailable: Type.Optional(Type.String()),
  /**
   * Stowage: why an S3 datastore's object store is failing (its last request got no answer or a
   * 5xx: which endpoint, since when, the error); absent once a request is answered again.
   */
  's3-endpoint-error': Type.Optional(Type.String()),
  /** The raw stored maintenance-mode property string. */
  maintenance: Type.Optional(Type.String()),
  'backend-type': Type.String(),
  /** Stowage: the maintenance window in force or next to come (api-types/maintenance-window.ts). */
  'next-maintenance-window': Type.Optional(NextMaintenanceWindowSchema),
  /** Stowage: the system holds on the store (low space, windows), oldest first; apart from `maintenance`; absent when none. */
  holds: Type.Optional(Type.Array(SystemHoldItemSchema)),
});
export type DatastoreListItem = Static<typeof DatastoreListItemSchema>;

const TypeCountsSchema = Type.Object({ groups: Type.Integer(), snapshots: Type.Integer() });

/** `GET /admin/datastore/{store}/status`. */
export const DatastoreStatusSchema = Type.Object({
  total: Type.Integer(),
  used: Type.Integer(),
  avail: Type.Integer(),
  'gc-status': Type.Optional(GcStatusSchema),
  'next-maintenance-window': Type.Optional(NextMaintenanceWindowSchema),
  /** Stowage: the system holds on the store, oldest first; absent when none. */
  holds: Type.Optional(Type.Array(SystemHoldItemSchema)),
  counts: Type.Optional(
    Type.Object({
      ct: TypeCountsSchema,
      host: TypeCountsSchema,
      vm: TypeCountsSchema,
      other: TypeCountsSchema,
    }),
  ),
  /** PBS 4: `filesystem` or `s3`. */
  'backend-type': Type.String(),
  /** Stowage: why the S3 datastore's object store is failing (as in the datastore list); absent when answering. */
  's3-endpoint-error': Type.Optional(Type.String()),
  /** PBS 4 `S3Statistics`: requests by method and bytes moved, on S3 datastores only. */
  's3-statistics': Type.Optional(
    Type.Object({
      downloaded: Type.Integer(),
      uploaded: Type.Integer(),
      get: Type.Integer(),
      post: Type.Integer(),
      put: Type.Integer(),
      head: Type.Integer(),
      delete: Type.Integer(),
    }),
  ),
});
export type DatastoreStatusReply = Static<typeof DatastoreStatusSchema>;

/** One entry of `GET /status/datastore-usage`. */
export const DatastoreUsageItemSchema = Type.Object({
  store: Type.String(),
  total: Type.Optional(Type.Integer()),
  used: Type.Optional(Type.Integer()),
  avail: Type.Optional(Type.Integer()),
  error: Type.Optional(Type.String()),
  'gc-status': Type.Optional(GcStatusSchema),
});
export type DatastoreUsageItem = Static<typeof DatastoreUsageItemSchema>;
