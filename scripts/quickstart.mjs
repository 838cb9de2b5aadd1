// `npm start`: set up (install, build), then start the server on the embedded default: config,
// datastore and state under ./data, an admin whose password is printed once on first start.
// Stop it with Ctrl-C (or `kill $(cat data/run/server.pid)`); SIGHUP restarts it gracefully,
// and this script follows the new server process until that one stops.
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ensureBuilt, root } from './ensure-built.mjs';

ensureBuilt();
const data = join(root, 'data');
const env = {
  STOWAGE_CONFIG_DIR: join(data, 'etc'),
  STOWAGE_DATA_DIR: data,
  STOWAGE_RUN_DIR: join(data, 'run'),
  // the quick start is for trying it out on this machine: reachable from elsewhere only when
  // asked (STOWAGE_LISTEN=0.0.0.0:8007 or --listen)
  STOWAGE_LISTEN: '127.0.0.1:8007',
  ...process.env,
};
const pidFile = join(env.STOWAGE_RUN_DIR, 'server.pid');
const child = spawn(
  process.execPath,
  [join(root, 'dist/src/cli/stowage.js'), 'server', '--quickstart', ...process.argv.slice(2)],
  { stdio: 'inherit', env },
);

/** The pid serving now: the one we started, or the process a graceful restart handed over to. */
let serving = child.pid;
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
  process.on(sig, () => {
    try {
      process.kill(serving, sig);
    } catch {
      // already gone
    }
  });
}

function alive(pid) {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

function successor() {
  try {
    const pid = Number(readFileSync(pidFile, 'utf8').trim());
    return Number.isInteger(pid) && pid !== serving && alive(pid) ? pid : undefined;
  } catch {
    return undefined;
  }
}

child.on('exit', (code, signal) => {
  const next = successor();
  if (next === undefined) process.exit(code ?? (signal ? 1 : 0));
  // a graceful restart: the new server is not our child, so watch it until it is gone
  serving = next;
  const timer = setInterval(() => {
    if (alive(serving)) return;
    const again = successor();
    if (again !== undefined) serving = again;
    else {
      clearInterval(timer);
      process.exit(0);
    }
  }, 500);
});
