/**
 * `GET /admin/datastore/{store}/maintenance-history` (Stowage extension, issue 13): the store's
 * maintenance events newest first — mode set and cleared, drains, system holds, windows, skipped
 * and failed jobs — from the instance's event log (src/maintenance/maintenance-events.ts).
 *
 * Reads the datastore configuration (for the 404) and the log only, never the datastore, so it
 * answers in every maintenance mode, offline and delete included: the history matters most while
 * the store is unavailable. A removed store is unknown (404) like for every other datastore route;
 * its events stay in the log as an audit trail, and show again under a store re-created with its
 * name.
 */
import { Type } from 'typebox';
import {
  HISTORY_DEFAULT_LIMIT,
  HISTORY_MAX_LIMIT,
  type MaintenanceHistoryItem,
} from '../../../api-types/maintenance-history.js';
import type { MaintenanceEvent } from '../../../maintenance/maintenance-events.js';
import { defineRoute, type AnyRoute } from '../../../http/route.js';
import { StoreParams } from './common.js';

/** The wire shape of one event: epoch seconds, kebab-case keys, the drain's duration in seconds. */
export function historyItem(e: MaintenanceEvent): MaintenanceHistoryItem {
  const job = e.detail?.job as { id?: unknown; type?: unknown } | undefined;
  const durationMs = e.detail?.['duration-ms'];
  const ref = e.detail?.ref;
  const upid = e.detail?.upid;
  return {
    id: e.id,
    time: Math.floor(e.time / 1000),
    type: e.type,
    severity: e.severity,
    source: e.source,
    ...(e.authId !== undefined && { 'auth-id': e.authId }),
    ...(e.from !== undefined && { from: e.from }),
    ...(e.to !== undefined && { to: e.to }),
    ...(e.message !== undefined && { message: e.message }),
    ...(typeof durationMs === 'number' && { duration: durationMs / 1000 }),
    ...(typeof ref === 'number' && { ref }),
    ...(typeof job?.id === 'string' && { 'job-id': job.id }),
    ...(typeof job?.type === 'string' && { 'job-type': job.type }),
    ...(typeof upid === 'string' && { upid }),
    ...(e.node !== undefined && { node: e.node }),
  };
}

const HistoryItemSchema = Type.Object({
  id: Type.Integer(),
  time: Type.Integer({ description: 'Epoch seconds.' }),
  type: Type.String({
    description:
      'mode-set, mode-cleared, drained, hold-engaged, hold-released, window-starting, job-skipped, job-failed',
  }),
  severity: Type.String(),
  source: Type.String({ description: '`operator`, `low-space`, `window:<id>`, `job:<id>`' }),
  'auth-id': Type.Optional(Type.String()),
  from: Type.Optional(Type.String({ description: 'Mode or hold type before (`none`: no mode).' })),
  to: Type.Optional(Type.String({ description: 'Mode or hold type after.' })),
  message: Type.Optional(Type.String()),
  duration: Type.Optional(Type.Number({ description: 'Drained: seconds the drain took.' })),
  ref: Type.Optional(Type.Integer({ description: 'Drained: the id of the change that drained.' })),
  'job-id': Type.Optional(Type.String()),
  'job-type': Type.Optional(Type.String()),
  upid: Type.Optional(Type.String({ description: "Job events: the job's task." })),
  node: Type.Optional(Type.String({ description: 'Cluster mode: the server that made the change.' })),
});

export const routes: AnyRoute[] = [
  defineRoute({
    method: 'GET',
    path: '/admin/datastore/:store/maintenance-history',
    params: StoreParams,
    query: Type.Object({
      limit: Type.Optional(
        Type.Integer({
          minimum: 1,
          maximum: HISTORY_MAX_LIMIT,
          default: HISTORY_DEFAULT_LIMIT,
          description: `How many events at most (default ${HISTORY_DEFAULT_LIMIT}).`,
        }),
      ),
      before: Type.Optional(
        Type.Integer({ minimum: 1, description: 'Only events older than this event id (paging).' }),
      ),
    }),
    // what active-operations asks: whoever may see the store's state may see how it got there
    permission: { path: '/datastore/{store}', privs: ['Datastore.Audit'], partial: true },
    returns: Type.Array(HistoryItemSchema),
    description:
      'Stowage: the maintenance history of the datastore, newest first: mode changes (who, from, ' +
      'to, message), drains with their `duration` in seconds, system holds engaged and released, ' +
      'maintenance windows starting, scheduled jobs skipped or failed. Page with `before` (the ' +
      'last id seen). Reads no datastore, so it works in every maintenance mode.',
    handler: async ({ params, query, server }) => {
      const access = server.datastores;
      access.datastoreConfig(params.store); // 404 for an unknown store
      const events = await access.backend.events.history(params.store, {
        limit: query.limit ?? HISTORY_DEFAULT_LIMIT,
        ...(query.before !== undefined && { before: query.before }),
      });
      return events.map(historyItem);
    },
  }),
];
