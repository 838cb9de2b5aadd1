/**
 * `GET /version` (PBS `src/api2/version.rs`, `pbs-api-types` `ApiVersionInfo`).
 *
 * PBS clients gate features on this answer, parsed by `ApiVersion::try_from` (`version` split at
 * the dot into major and minor, `release` a number; `repoid` is not parsed): a PBS 4 push sync job
 * refuses a remote below 2.2 ("Unsupported remote api version, minimum v2.2 required") and sends
 * `error-on-protected` and expects `BackupGroupDeleteStats` from 3.2.11 on. So `version` and
 * `release` name the PBS API level Stowage implements, not Stowage's own version, which goes in
 * `repoid`.
 */
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Type } from 'typebox';
import { defineRoute, filtered, type AnyRoute } from '../http/route.js';

function packageVersion(): string {
  // src/api2 when run with tsx, dist/src/api2 when built: walk up to the package root
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 5; i++) {
    try {
      const pkg = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as {
        name?: string;
        version?: string;
      };
      if (pkg.name === 'stowage' && pkg.version) return pkg.version;
    } catch {
      // not here
    }
    dir = dirname(dir);
  }
  return '0.0.0';
}

/** The PBS release whose API Stowage follows: PBS 4.2.3. */
export const PBS_API_VERSION = { version: '4.2', release: '3' } as const;

const repoid = `stowage-${packageVersion()}`;

export const routes: AnyRoute[] = [
  defineRoute({
    method: 'GET',
    path: '/version',
    permission: filtered('nothing to filter: every authenticated caller gets the same answer'),
    description:
      'API version, as PBS ApiVersionInfo: `version` (major.minor) and `release` are the PBS API ' +
      'level implemented (4.2, 3), so that PBS clients gating features on it work; `repoid` is ' +
      "Stowage's own version (stowage-x.y.z).",
    returns: Type.Object({ version: Type.String(), release: Type.String(), repoid: Type.String() }),
    handler: () => ({ ...PBS_API_VERSION, repoid }),
  }),
];
