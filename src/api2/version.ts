/** `GET /version` (PBS `src/api2/version.rs`). */
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Type } from 'typebox';
import { defineRoute, type AnyRoute } from '../server/route.js';

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

const [major = '0', minor = '0', patch = '0'] = packageVersion().split('.');

export const routes: AnyRoute[] = [
  defineRoute({
    method: 'GET',
    path: '/version',
    permission: 'authenticated',
    description: 'Server version: `version` is major.minor, `release` the patch level, as PBS splits them.',
    returns: Type.Object({ version: Type.String(), release: Type.String(), repoid: Type.String() }),
    handler: () => ({ version: `${major}.${minor}`, release: patch, repoid: 'stowage' }),
  }),
];
