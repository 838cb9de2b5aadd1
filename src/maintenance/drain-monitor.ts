/**
 * The server's drain monitor: every few seconds, for each datastore, records in the maintenance
 * history that the latest mode or hold change has drained (recordDrainedIfIdle), so the history
 * and the metrics know how long each drain took even when no operator waits for it. Recording is
 * once per change, so two servers of one instance (a graceful restart) may both run it.
 */
import type { DatastoreAccess } from './datastore-access.js';
import { recordDrainedIfIdle } from './maintenance-control.js';

export interface DrainMonitor {
  stop(): void;
}

export function startDrainMonitor(
  access: DatastoreAccess,
  opts: { intervalMs?: number; log?: { warn(obj: object, msg: string): void } } = {},
): DrainMonitor {
  let running = false;
  const tick = async () => {
    if (running) return; // a slow pass is not overtaken by the next one
    running = true;
    try {
      for (const store of access.config.readCached().stores.keys()) {
        try {
          await recordDrainedIfIdle(access, store);
        } catch (err) {
          opts.log?.warn({ err, store }, 'drain monitor: cannot record the drain');
        }
      }
    } finally {
      running = false;
    }
  };
  const timer = setInterval(() => void tick(), opts.intervalMs ?? 2000);
  timer.unref();
  return { stop: () => clearInterval(timer) };
}
