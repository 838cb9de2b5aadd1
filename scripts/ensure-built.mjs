// Shared by `npm start` and `npm test`: install dependencies when the lock file changed since the
// last install, then build, so that both quick-start commands work on a fresh clone.
import { execSync } from 'node:child_process';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const root = join(dirname(fileURLToPath(import.meta.url)), '..');

function run(cmd) {
  execSync(cmd, { cwd: root, stdio: ['ignore', 'inherit', 'inherit'] });
}

export function ensureBuilt() {
  const marker = join(root, 'node_modules', '.package-lock.json');
  const lock = join(root, 'package-lock.json');
  if (!existsSync(marker) || statSync(marker).mtimeMs < statSync(lock).mtimeMs) {
    console.error('stowage: installing dependencies (npm ci)...');
    run('npm ci --no-audit --no-fund');
  }
  console.error('stowage: building...');
  run('npm run --silent build');
  if (existsSync(join(root, 'www', 'package.json')) || existsSync(join(root, 'www', 'vite.config.ts'))) {
    const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'));
    if (pkg.scripts['build:www']) run('npm run --silent build:www');
  }
}
