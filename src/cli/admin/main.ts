import { Command, CommanderError, Option } from 'commander';
import { failAndExit, EXIT } from '../exit-codes.js';
import { registerAccessCommands } from './access-commands.js';
import { registerClusterCommands } from './cluster-commands.js';
import { closeInProcessApis } from './admin-connection.js';
import { registerDatastoreCommands } from './datastore-commands.js';
import { registerJobCommands } from './job-commands.js';
import { registerSyncCommands } from './sync-commands.js';
import { registerRemoteCommands } from './remote-commands.js';
import { registerS3Commands } from './s3-commands.js';
import { registerServerCommand } from './server-command.js';

/** Build the `stowage` command tree. Each command group registers itself from its own module. */
export function buildAdminCli(): Command {
  const program = new Command('stowage')
    .description('Stowage backup server and administration')
    .option('--server <host:port>', 'server to talk to (env STOWAGE_SERVER, default localhost:8007)')
    .option('--config-dir <dir>', 'server configuration directory (env STOWAGE_CONFIG_DIR)')
    .addOption(
      new Option('--output-format <format>', 'output for scripts')
        .choices(['text', 'json', 'json-pretty'])
        .default('text'),
    )
    .exitOverride()
    .configureOutput({ writeErr: (s) => process.stderr.write(s) });
  registerServerCommand(program);
  registerDatastoreCommands(program);
  registerJobCommands(program);
  registerRemoteCommands(program);
  registerS3Commands(program);
  registerSyncCommands(program);
  registerAccessCommands(program);
  registerClusterCommands(program);
  // sub-commands inherit exitOverride so usage errors exit with EXIT.USAGE, not commander's 1
  const inherit = (cmd: Command) => {
    for (const c of cmd.commands) {
      c.exitOverride();
      inherit(c);
    }
  };
  inherit(program);
  return program;
}

export async function runAdminCli(argv: string[]): Promise<void> {
  const program = buildAdminCli();
  try {
    await program.parseAsync(argv);
    await closeInProcessApis();
  } catch (err) {
    await closeInProcessApis().catch(() => undefined);
    if (err instanceof CommanderError) process.exit(err.exitCode === 0 ? EXIT.OK : EXIT.USAGE);
    failAndExit(err);
  }
}
