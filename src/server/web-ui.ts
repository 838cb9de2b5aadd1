/**
 * Serves the web UI (`www/dist`, built by `npm run build:www`) at `/`. Only the built files are
 * routed (no wildcard), so an unknown path still gets fastify's 404 and the API's own 404
 * envelope under `/api2/json` is untouched; the UI uses hash routes, so it needs no fallback.
 */
import fastifyStatic from '@fastify/static';
import type { FastifyInstance } from 'fastify';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

/**
 * Where the built UI lives: next to the sources (`src/server` → `www/dist`) or next to the
 * compiled server (`dist/src/server` → `www/dist`).
 */
export function defaultWebUiDir(): string | undefined {
  for (const rel of ['../../www/dist', '../../../www/dist']) {
    const dir = fileURLToPath(new URL(rel, import.meta.url));
    if (existsSync(`${dir}/index.html`)) return dir;
  }
  return undefined;
}

/**
 * Register the UI's files on `app`. Returns false (and registers nothing) when the UI was not
 * built, so the API still runs on a checkout that skipped `build:www`.
 */
export async function registerWebUi(app: FastifyInstance, dir = defaultWebUiDir()): Promise<boolean> {
  if (!dir || !existsSync(`${dir}/index.html`)) {
    app.log.warn('web UI not found (run `npm run build:www`); serving the API only');
    return false;
  }
  await app.register(fastifyStatic, {
    root: dir,
    prefix: '/',
    wildcard: false,
    index: ['index.html'],
    setHeaders(res, path) {
      // Vite puts a content hash into every asset name, so those never change; index.html must
      // be revalidated so a server upgrade is picked up on the next load.
      res.setHeader(
        'cache-control',
        path.includes('/assets/') ? 'public, max-age=31536000, immutable' : 'no-cache',
      );
      res.setHeader('x-content-type-options', 'nosniff');
      res.setHeader('x-frame-options', 'DENY');
    },
  });
  return true;
}
