/**
 * Where Stowage keeps its configuration, state and runtime files.
 *
 * A source checkout runs self-contained: everything lives under `<checkout>/data`, so a developer
 * never needs root and never touches a system installation. An installed system sets the three
 * directories through the environment (as the packaged systemd unit does):
 *
 *   STOWAGE_CONFIG_DIR=/etc/stowage      (datastore.cfg, user.cfg, ... — PBS: /etc/proxmox-backup)
 *   STOWAGE_DATA_DIR=/var/lib/stowage    (task logs, job state, operation registry)
 *   STOWAGE_RUN_DIR=/run/stowage         (sockets, locks that die with a reboot)
 *
 * When neither an override nor a checkout is found, those FHS paths are the defaults.
 */
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';

export interface StowagePaths {
  configDir: string;
  dataDir: string;
  runDir: string;
}

export const SYSTEM_PATHS: Readonly<StowagePaths> = {
  configDir: '/etc/stowage',
  dataDir: '/var/lib/stowage',
  runDir: '/run/stowage',
};

/**
 * The root of the source checkout this module runs from (`src/config/paths.ts` under tsx, or
 * `dist/src/config/paths.js` after a build), or undefined for an installed package. The root is
 * the nearest ancestor holding a package.json named "stowage"; a copy under `node_modules` is an
 * installation, not a checkout, and must not write its data next to its code.
 */
export function findSourceRoot(fromUrl: string = import.meta.url): string | undefined {
  let dir = dirname(fileURLToPath(fromUrl));
  for (;;) {
    const pkg = join(dir, 'package.json');
    if (existsSync(pkg)) {
      try {
        const name = (JSON.parse(readFileSync(pkg, 'utf8')) as { name?: unknown }).name;
        if (name === 'stowage') {
          return dir.split(sep).includes('node_modules') ? undefined : dir;
        }
      } catch {
        // an unreadable or foreign package.json: keep walking up
      }
    }
    const parent = dirname(dir);
    if (parent === dir) return undefined;
    dir = parent;
  }
}

/**
 * Resolve the three directories: an explicit override wins, then STOWAGE_CONFIG_DIR /
 * STOWAGE_DATA_DIR / STOWAGE_RUN_DIR, then defaults. Config and run dirs default to `etc` and `run`
 * under the data dir, so pointing STOWAGE_DATA_DIR at a temp dir isolates a whole instance (tests,
 * a second server). Only with nothing set and no checkout found are the FHS paths used.
 * Relative paths are made absolute against the current directory, once, here.
 */
export function resolvePaths(
  overrides: Partial<StowagePaths> = {},
  env: NodeJS.ProcessEnv = process.env,
): StowagePaths {
  const pick = (override: string | undefined, envName: string): string | undefined => {
    const value = override || env[envName];
    return value ? resolve(value) : undefined;
  };
  const configDir = pick(overrides.configDir, 'STOWAGE_CONFIG_DIR');
  const runDir = pick(overrides.runDir, 'STOWAGE_RUN_DIR');
  let dataDir = pick(overrides.dataDir, 'STOWAGE_DATA_DIR');
  if (dataDir === undefined) {
    const root = findSourceRoot();
    if (root === undefined) {
      return {
        configDir: configDir ?? SYSTEM_PATHS.configDir,
        dataDir: SYSTEM_PATHS.dataDir,
        runDir: runDir ?? SYSTEM_PATHS.runDir,
      };
    }
    dataDir = join(root, 'data');
  }
  return {
    configDir: configDir ?? join(dataDir, 'etc'),
    dataDir,
    runDir: runDir ?? join(dataDir, 'run'),
  };
}
