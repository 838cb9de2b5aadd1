/**
 * One etcd request as cluster mode makes it: an etcd failure becomes ERR_CLUSTER_UNREACHABLE
 * (503, naming what could not be reached and why), our own errors pass through.
 */
import type { IOptions } from 'etcd3';
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

type WatchBackoff = NonNullable<NonNullable<IOptions['faultHandling']>['watchBackoff']>;

/**
 * How long the client waits before it opens the watches again after etcd failed them: doubling
 * from 100 ms up to 1 s. The client's default grows to 30 s, so a server cut off for a few seconds
 * would see the datastore configuration's changes only up to half a minute after etcd answers
 * again, and its timer held a closed client's process open as long.
 */
function watchBackoff(duration = 0): WatchBackoff {
  return { duration, next: () => watchBackoff(Math.min(Math.max(duration * 2, 100), 1_000)) };
}

/**
 * The options of an etcd client of cluster mode (the admission backend's, the shared
 * configuration's): a deadline on every unary call, so an unreachable etcd is an error, not a
 * hang, and watches reopened within a second once etcd answers again.
 */
export function clusterEtcdOptions(
  endpoints: string[],
  callTimeoutMs: number,
  extra?: Omit<IOptions, 'hosts'>,
): IOptions {
  return {
    ...extra,
    hosts: endpoints,
    dialTimeout: callTimeoutMs,
    faultHandling: { watchBackoff: watchBackoff(), ...extra?.faultHandling },
    defaultCallOptions: (ctx) => (ctx.isStream ? {} : { deadline: Date.now() + callTimeoutMs }),
  };
}
