/**
 * Datastores a PBS 4 `datastore.cfg` may hold that this Stowage version cannot serve: removable
 * datastores (`backing-device`, a `path` relative to the device, mounted by PBS at
 * `/mnt/datastore/NAME`) and datastores with an S3 `backend` (whose `path` is only a local cache
 * of the bucket). They load, are listed and their configuration can be edited, but no read or
 * write operation is admitted on them, so nothing ever opens, creates or deletes a file under
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
