// Shared by `npm start` and `npm test`: install dependencies when the lock file changed since the
// last install, then build what changed since the last build, so that both quick-start commands
// work on a fresh clone and start at once when nothing changed.
import { execSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, lstatSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const root = join(dirname(fileURLToPath(import.meta.url)), '..');

function run(cmd) {
  execSync(cmd, { cwd: root, stdio: ['ignore', 'inherit', 'inherit'] });
}

/** Every file under `paths` (files or folders), with its modification time and size. */
function listInputs(paths) {
  const out = [];
  const walk = (p) => {
    if (!existsSync(p)) return;
    const st = statSync(p);
    if (st.isDirectory()) {
      for (const name of readdirSync(p).sort()) walk(join(p, name));
    } else {
      out.push(`${p}\t${st.mtimeMs}\t${st.size}`);
    }
  };
  for (const p of paths) walk(join(root, p));
  return out.join('\n');
}

/**
 * Run `cmd` unless the inputs are what the last successful run of it was built from (a stamp
 * file in the output folder records them: any file added, removed, changed or touched rebuilds).
 */
function buildIfChanged(what, cmd, inputs, stampPath) {
  const current = listInputs(inputs);
  const stamp = join(root, stampPath);
  if (existsSync(stamp) && readFileSync(stamp, 'utf8') === current) return;
  console.error(`stowage: building ${what}...`);
  run(cmd);
  writeFileSync(stamp, current);
}

/**
 * Whether node_modules holds what package-lock.json names (npm's own record of an install,
 * `node_modules/.package-lock.json`, lists the same packages at the same versions): an
 * `npm ci` run just before (as CI does) needs no second one.
 */
function installedMatchesLock(modules) {
  const hidden = join(modules, '.package-lock.json');
  if (!existsSync(hidden)) return false;
  const packages = (file) =>
    Object.entries(JSON.parse(readFileSync(file, 'utf8')).packages ?? {}).filter(([path]) =>
      path.startsWith('node_modules/'),
    );
  const installed = new Map(packages(hidden).map(([path, p]) => [path, p.version]));
  // optional packages for other platforms (esbuild's, say) are in the lock but not installed
  return packages(join(root, 'package-lock.json')).every(([path, p]) =>
    installed.has(path) ? installed.get(path) === p.version : p.optional === true,
  );
}

export function ensureBuilt() {
  // install when the lock file's content differs from what was installed (not its mtime: a
  // fresh checkout touches every file); a linked node_modules (a worktree borrowing another
  // checkout's) is left alone, since npm ci would empty the folder it points to
  const modules = join(root, 'node_modules');
  const stamp = join(modules, '.installed-from');
  const lockHash = createHash('sha256')
    .update(readFileSync(join(root, 'package-lock.json')))
    .digest('hex');
  const linked = existsSync(modules) && lstatSync(modules).isSymbolicLink();
  if (!linked && !existsSync(stamp) && installedMatchesLock(modules)) writeFileSync(stamp, lockHash);
  if (!linked && (!existsSync(stamp) || readFileSync(stamp, 'utf8') !== lockHash)) {
    console.error('stowage: installing dependencies (npm ci)...');
    run('npm ci --no-audit --no-fund');
    writeFileSync(stamp, lockHash);
  }
  const common = ['package.json', 'package-lock.json'];
  buildIfChanged(
    'the server',
    'npm run --silent build',
    ['src', 'tsconfig.json', ...common],
    'dist/.built-from',
  );
  const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'));
  if (pkg.scripts['build:www']) {
    buildIfChanged(
      'the web UI',
      'npm run --silent build:www',
      [
        'www/src',
        'www/index.html',
        'www/public',
        'www/vite.config.ts',
        'www/tsconfig.json',
        'src/api-types',
        ...common,
      ],
      'www/dist/.built-from',
    );
  }
}
