/**
 * `stowage-client`: backup, restore, catalog, snapshots, list, status, login. Errors are printed as
 * `error: <message>` and mapped to exit codes in one place (src/cli/exit-codes.ts): a datastore
 * in maintenance exits with EXIT.MAINTENANCE, so scripts can retry later.
 */
import { Command, CommanderError } from 'commander';
import { failAndExit, EXIT } from '../exit-codes.js';

type Register = (program: Command) => void;

/**
 * Each command's module, loaded only when needed: `stowage-client backup` does not load the
 * restore, catalog and info code (pxar decoder, extractor, tar-stream), which every run paid in
 * module loading before. Unknown or missing command names (help, usage errors) load them all.
 */
const COMMAND_MODULES: { names: string[]; load: () => Promise<Register> }[] = [
  { names: ['backup'], load: async () => (await import('./backup-command.js')).registerBackupCommand },
  { names: ['restore'], load: async () => (await import('./restore-command.js')).registerRestoreCommand },
  { names: ['catalog'], load: async () => (await import('./catalog-command.js')).registerCatalogCommand },
  {
    names: ['login', 'snapshots', 'list', 'status'],
    load: async () => (await import('./info-commands.js')).registerInfoCommands,
  },
];

/** The first argument that is not an option: the command name commander will dispatch to. */
function commandName(argv: string[]): string | undefined {
  return argv.slice(2).find((a) => !a.startsWith('-'));
}

export async function buildClientCli(argv: string[] = []): Promise<Command> {
  const program = new Command('stowage-client')
    .description(
      'Stowage backup client. Repository: --repository or STOWAGE_REPOSITORY / PBS_REPOSITORY; ' +
        'password or token secret: STOWAGE_PASSWORD / PBS_PASSWORD; pinned certificate: STOWAGE_FINGERPRINT / PBS_FINGERPRINT.',
    )
    .exitOverride()
    .configureOutput({ writeErr: (s) => process.stderr.write(s) });
  const name = commandName(argv);
  const wanted = COMMAND_MODULES.filter((m) => name !== undefined && m.names.includes(name));
  for (const register of await Promise.all(
    (wanted.length > 0 ? wanted : COMMAND_MODULES).map((m) => m.load()),
  )) {
    register(program);
  }
  for (const cmd of program.commands) cmd.exitOverride();
  return program;
}

export async function runClientCli(argv: string[]): Promise<void> {
  const program = await buildClientCli(argv);
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
