/**
 * The API without a server: the admin CLI's way to work while no `stowage server` runs (as
 * `proxmox-backup-manager` calls PBS's API handlers in its own process). The same routes, the
 * same registrar (parameters, authentication, permissions, errors), the same datastore access
 * with its locks and cross-process operation registry — only requests arrive through
 * `fastify.inject` instead of a socket, and tasks run in the calling process.
 */
import Fastify from 'fastify';
import { mkdirSync } from 'node:fs';
import type { ServerPaths } from '../http/context.js';
import { loadOrCreateAuthKeys } from '../http/auth/auth-keys.js';
import { API_FASTIFY_OPTIONS, assembleApi } from './server.js';

export interface InProcessReply {
  status: number;
  body: string;
}

export interface InProcessApi {
  /** One request, as it would arrive over HTTPS (`url` includes `/api2/json` and the query). */
  request(
    method: 'GET' | 'POST' | 'PUT' | 'DELETE',
    url: string,
    headers: Record<string, string>,
    body?: string,
  ): Promise<InProcessReply>;
  /** Wait for the tasks started here to end, then release the datastores. */
  close(): Promise<void>;
}

export async function openInProcessApi(paths: ServerPaths): Promise<InProcessApi> {
  for (const dir of [paths.configDir, paths.dataDir, paths.runDir]) mkdirSync(dir, { recursive: true });
  const keys = await loadOrCreateAuthKeys(paths.configDir);
  const app = Fastify({ logger: false, ...API_FASTIFY_OPTIONS });
  const context = await assembleApi(app, { paths, keys, authFailureDelayMs: 0 });
  await app.ready();
  return {
    async request(method, url, headers, body) {
      const res = await app.inject({ method, url, headers, ...(body !== undefined && { payload: body }) });
      return { status: res.statusCode, body: res.body };
    },
    async close() {
      await app.close();
      await context.tasks.close();
      context.datastores.close();
    },
  };
}
