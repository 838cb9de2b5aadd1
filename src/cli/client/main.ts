import { Command, CommanderError } from 'commander';
import { failAndExit, EXIT } from '../exit-codes.js';

export function buildClientCli(): Command {
  return new Command('stowage-client').description('Stowage backup client').exitOverride();
}

export async function runClientCli(argv: string[]): Promise<void> {
  const program = buildClientCli();
  try {
    await program.parseAsync(argv);
  } catch (err) {
    if (err instanceof CommanderError) process.exit(err.exitCode === 0 ? EXIT.OK : EXIT.USAGE);
    failAndExit(err);
  }
}
