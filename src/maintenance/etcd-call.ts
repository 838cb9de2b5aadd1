/**
 * One etcd request as cluster mode makes it: an etcd failure becomes ERR_CLUSTER_UNREACHABLE
 * (503, naming what could not be reached and why), our own errors pass through.
 */
import { ERR_CLUSTER_UNREACHABLE, isStowageError } from '../errors.js';

/** ERR_CLUSTER_UNREACHABLE for an etcd failure; our own errors pass through. */
export function etcdUnreachable(subject: string, err: unknown): Error {
  if (isStowageError(err)) return err;
  const why = err instanceof Error ? err.message.split('\n')[0]! : String(err);
  return ERR_CLUSTER_UNREACHABLE(subject, why);
}

/** Make `request`, mapping an etcd failure as etcdUnreachable does. */
export async function etcdCall<T>(subject: string, request: () => Promise<T>): Promise<T> {
  try {
    return await request();
  } catch (err) {
    throw etcdUnreachable(subject, err);
  }
}
