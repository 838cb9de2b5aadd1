/**
 * A worker task that owns an admitted datastore operation (PBS "pre-task", reference §2): the
 * caller admits first, so a refusal is synchronous and creates no task; from then on the task owns
 * the admission and releases it when its function ends, however it ends. The API's `spawnAdmittedTask`
 * and the job runner both start their tasks through this one function.
 */
import type { TaskManager, WorkerTask } from './worker-task.js';

/** What the task needs of an admission (`DatastoreHandle` of `src/maintenance/`). */
export interface AdmittedOperation {
  /** End the admitted operation; called once, when the task ends or could not start. */
  release(): Promise<void>;
  /** Name the task in the admission record, so an operator sees which task holds the store. */
  attachTask(taskId: string): void;
}

/**
 * Start `fn` as a worker task that owns `handle`: released when `fn` ends, or before this function
 * rejects if the task cannot be started (e.g. the server is shutting down). Returns the UPID.
 */
export async function spawnTaskOwning<H extends AdmittedOperation>(
  tasks: TaskManager,
  handle: H,
  task: { type: string; id: string | undefined; authId: string },
  fn: (worker: WorkerTask, handle: H) => Promise<void>,
): Promise<string> {
  let upid: string;
  try {
    upid = tasks.spawnTask(task.type, task.id, task.authId, async (worker) => {
      try {
        await fn(worker, handle);
      } finally {
        await handle.release();
      }
    });
  } catch (err) {
    await handle.release();
    throw err;
  }
  handle.attachTask(upid);
  return upid;
}

/**
 * Several admissions owned by one task as one (a sync: its target's and its local source's):
 * released together, each named with the task.
 */
export function ownTogether(handles: readonly AdmittedOperation[]): AdmittedOperation {
  return {
    release: async () => {
      for (const h of handles) await h.release();
    },
    attachTask: (taskId) => handles.forEach((h) => h.attachTask(taskId)),
  };
}
