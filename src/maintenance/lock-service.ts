/**
 * The lock service's interface, defined below admission in src/datastore/lock-service.ts (the
 * datastore takes its locks through it) and re-exported here for admission, jobs and tasks. The
 * local implementation is local-lock-service.ts; the admission backend hands it out
 * (`AdmissionBackend.locks`).
 */
export type { HeldLock, LockName, LockOptions, LockService } from '../datastore/lock-service.js';
