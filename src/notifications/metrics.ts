/**
 * `GET /metrics`: Prometheus text exposition (prom-client) of the maintenance state, read fresh
 * from the admission backend at each scrape, so every process of the instance shows the same:
 *
 *   stowage_datastore_maintenance_mode{store,type}         1 for the mode in force (type "none" without one)
 *   stowage_datastore_system_hold{store,source,type}       1 per system hold on the store
 *   stowage_datastore_active_operations{store,class}      running operations by class (read, ingest, reclaim, lookup)
 *   stowage_datastore_last_drain_seconds{store}           how long the last drain took (latest `drained` event)
 *
 * Authentication (docs/notifications.md): the API's own, a ticket or an API token, with
 * Sys.Audit on /system/status; a Prometheus scraper uses a token through its `authorization`
 * setting (type PBSAPIToken).
 */
import type { FastifyInstance } from 'fastify';
import { Gauge, Registry } from 'prom-client';
import { authenticate } from '../http/auth/authenticate.js';
import type { ServerContext } from '../http/context.js';
import { errorEnvelope } from '../http/error-envelope.js';
import { ForbiddenError } from '../errors.js';
import { MAINTENANCE_TYPES, OPERATION_CLASSES } from '../api-types/maintenance.js';
import type { MaintenanceEventLog } from '../maintenance/maintenance-events.js';

export const METRICS_ACL_PATH = '/system/status';

/** How far back a scrape looks for the last drain (the newest events of the store). */
const DRAIN_LOOKBACK = 1000;

/** The duration of the store's latest recorded drain, in milliseconds (undefined: none recorded). */
async function lastDrainMs(events: MaintenanceEventLog, store: string): Promise<number | undefined> {
  const drained = (await events.history(store, { limit: DRAIN_LOOKBACK })).find((e) => e.type === 'drained');
  const ms = drained?.detail?.['duration-ms'];
  return typeof ms === 'number' ? ms : undefined;
}

/** Build the metrics of every configured datastore now. */
export async function collectMetrics(ctx: ServerContext): Promise<Registry> {
  const registry = new Registry();
  const mode = new Gauge({
    name: 'stowage_datastore_maintenance_mode',
    help: 'Maintenance mode in force per datastore: 1 for its type, 0 for the others ("none": no mode).',
    labelNames: ['store', 'type'],
    registers: [registry],
  });
  const hold = new Gauge({
    name: 'stowage_datastore_system_hold',
    help: 'System holds Stowage set on a datastore (low space, maintenance windows), 1 per hold.',
    labelNames: ['store', 'source', 'type'],
    registers: [registry],
  });
  const active = new Gauge({
    name: 'stowage_datastore_active_operations',
    help: 'Running operations per datastore and operation class.',
    labelNames: ['store', 'class'],
    registers: [registry],
  });
  const drain = new Gauge({
    name: 'stowage_datastore_last_drain_seconds',
    help: 'Duration of the last drain after a maintenance change (time until the operations it refuses ended).',
    labelNames: ['store'],
    registers: [registry],
  });
  const backend = ctx.datastores.backend;
  for (const store of ctx.datastores.config.readCached().stores.keys()) {
    let current: string;
    try {
      current = (await backend.mode(store))?.type ?? 'none';
    } catch {
      current = 'unknown'; // an unparsable mode: shown, not fatal for the other stores
    }
    for (const type of ['none', ...MAINTENANCE_TYPES]) mode.set({ store, type }, type === current ? 1 : 0);
    if (current === 'unknown') mode.set({ store, type: 'unknown' }, 1);
    for (const h of await backend.holds(store)) hold.set({ store, source: h.source, type: h.type }, 1);
    const counts = await backend.counts(store);
    for (const cls of OPERATION_CLASSES) active.set({ store, class: cls }, counts[cls]);
    const ms = await lastDrainMs(backend.events, store);
    if (ms !== undefined) drain.set({ store }, ms / 1000);
  }
  return registry;
}

/** Serve `/metrics` on the API's port. */
export function registerMetrics(app: FastifyInstance, ctx: ServerContext): void {
  app.get('/metrics', async (request, reply) => {
    try {
      const { authId } = authenticate(ctx, 'GET', request.headers);
      if (!ctx.userInfo.get().hasPrivs(authId, METRICS_ACL_PATH, ['Sys.Audit'])) {
        throw new ForbiddenError(`permission check failed - missing Sys.Audit on ${METRICS_ACL_PATH}`);
      }
      const registry = await collectMetrics(ctx);
      return reply.type(registry.contentType).send(await registry.metrics());
    } catch (err) {
      const env = errorEnvelope(err);
      return reply.status(env.status).send(env.body);
    }
  });
}
