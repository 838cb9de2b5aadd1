// `npm start`: set up (install, build), then start the server on the embedded default: config,
// datastore and state under ./data, an admin whose password is printed once on first start.
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { ensureBuilt, root } from './ensure-built.mjs';

ensureBuilt();
const data = join(root, 'data');
const child = spawn(
  process.execPath,
  [join(root, 'dist/src/cli/stowage.js'), 'server', '--quickstart', ...process.argv.slice(2)],
  {
    stdio: 'inherit',
    env: {
      STOWAGE_CONFIG_DIR: join(data, 'etc'),
      STOWAGE_DATA_DIR: data,
      STOWAGE_RUN_DIR: join(data, 'run'),
      // the quick start is for trying it out on this machine: reachable from elsewhere only when
      // asked (STOWAGE_LISTEN=0.0.0.0:8007 or --listen)
      STOWAGE_LISTEN: '127.0.0.1:8007',
      ...process.env,
    },
  },
);
for (const sig of ['SIGINT', 'SIGTERM']) process.on(sig, () => child.kill(sig));
child.on('exit', (code, signal) => process.exit(code ?? (signal ? 1 : 0)));
