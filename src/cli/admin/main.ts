import { Command, CommanderError } from 'commander';
import { failAndExit, EXIT } from '../exit-codes.js';

/** Build the `stowage` command tree. Each command group registers itself from its own module. */
export function buildAdminCli(): Command {
  const program = new Command('stowage')
    .description('Stowage backup server and administration')
    .exitOverride()
    .configureOutput({ writeErr: (s) => process.stderr.write(s) });
  return program;
}

export async function runAdminCli(argv: string[]): Promise<void> {
  const program = buildAdminCli();
  try {
    await program.parseAsync(argv);
  } catch (err) {
    if (err instanceof CommanderError) process.exit(err.exitCode === 0 ? EXIT.OK : EXIT.USAGE);
    failAndExit(err);
  }
}
