/**
 * Datastores a `datastore.cfg` may hold that this Stowage version cannot serve: a `backend` type
 * other than `filesystem` and PBS 4's `s3` (what a newer PBS may write), or a backend this version
 * cannot parse. (Removable and S3 datastores are served: removable-datastore.ts,
 * chunk-backend-for.ts; an S3 datastore whose endpoint is missing from s3.cfg is refused there
 * with the same code.) They load, are listed and their configuration can be edited, but no read
 * or write operation is admitted on them, so nothing ever opens, creates or deletes a file under
 * their path (reference §4.4; issue 9 item 5).
 *
 * The refusal is 400 (code UNSUPPORTED), not the 503 of maintenance: it is not temporary, and
 * clients treat 503 as "retry later" (the Stowage CLIs exit 75, EX_TEMPFAIL). PBS itself answers its
 * equivalent refusal (`datastore 'x' is not mounted`) with 400.
 */
import type { DatastoreConfig } from '../config/datastore-config.js';
import { unsupportedDatastoreFeature } from '../config/datastore-config.js';
import { StowageError } from '../errors.js';

export class UnsupportedDatastoreError extends StowageError {
  readonly store: string;
  /** The configuration property that names the feature (`backing-device`, `backend`). */
  readonly param: 'backing-device' | 'backend';
  constructor(store: string, feature: { param: 'backing-device' | 'backend'; what: string }) {
    super(
      'UNSUPPORTED',
      `datastore '${store}' is ${feature.what}, which this Stowage version does not support`,
      { details: { store, feature: feature.param } },
    );
    this.store = store;
    this.param = feature.param;
  }
}

/** Throw UnsupportedDatastoreError when `cfg` is a datastore this version must not open. */
export function checkSupportedDatastore(cfg: DatastoreConfig): void {
  const feature = unsupportedDatastoreFeature(cfg);
  if (feature) throw new UnsupportedDatastoreError(cfg.name, feature);
}

/** Whether `cfg` is a datastore this version can open (a plain filesystem datastore). */
export function isSupportedDatastore(cfg: DatastoreConfig): boolean {
  return unsupportedDatastoreFeature(cfg) === undefined;
}
