/**
 * `stowage-client`: backup, restore, catalog, snapshots, list, status, login. Errors are printed as
 * `error: <message>` and mapped to exit codes in one place (src/cli/exit-codes.ts): a datastore
 * in maintenance exits with EXIT.MAINTENANCE, so scripts can retry later.
 */
import { Command, CommanderError } from 'commander';
import { failAndExit, EXIT } from '../exit-codes.js';
import { registerBackupCommand } from './backup-command.js';
import { registerCatalogCommand } from './catalog-command.js';
import { registerInfoCommands } from './info-commands.js';
import { registerRestoreCommand } from './restore-command.js';

export function buildClientCli(): Command {
  const program = new Command('stowage-client')
    .description(
      'Stowage backup client. Repository: --repository or STOWAGE_REPOSITORY / PBS_REPOSITORY; ' +
        'password or token secret: STOWAGE_PASSWORD / PBS_PASSWORD; pinned certificate: STOWAGE_FINGERPRINT / PBS_FINGERPRINT.',
    )
    .exitOverride()
    .configureOutput({ writeErr: (s) => process.stderr.write(s) });
  registerBackupCommand(program);
  registerRestoreCommand(program);
  registerCatalogCommand(program);
  registerInfoCommands(program);
  for (const cmd of program.commands) cmd.exitOverride();
  return program;
}

export async function runClientCli(argv: string[]): Promise<void> {
  const program = buildClientCli();
  try {
    await program.parseAsync(argv);
  } catch (err) {
    if (err instanceof CommanderError) process.exit(err.exitCode === 0 ? EXIT.OK : EXIT.USAGE);
    failAndExit(err);
  }
  // Worker threads and sockets are closed by the commands; exit explicitly so a stray handle
  // (a keep-alive TLS socket) cannot keep a finished backup hanging.
  process.exit(EXIT.OK);
}
