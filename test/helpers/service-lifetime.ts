/** Tie a test service a process started for itself (Ceph, etcd) to that process's life. */

/**
 * Kill `service`'s daemons when this process exits, or is interrupted or terminated (the signal
 * then ends the process as it would have): a test run never leaves daemons behind.
 */
export function killWithProcess<T extends { killSync(): void }>(service: T): T {
  process.once('exit', () => service.killSync());
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    process.once(signal, () => {
      service.killSync();
      process.kill(process.pid, signal);
    });
  }
  return service;
}
