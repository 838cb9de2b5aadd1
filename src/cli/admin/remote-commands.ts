/**
 * `stowage remote list|show|create|update|remove|scan` (`config/remote`), as PBS's
 * `proxmox-backup-manager remote` commands. The password (or token secret) comes from
 * `--password` or, to keep it out of `ps`, from STOWAGE_REMOTE_PASSWORD. Docs: docs/sync.md.
 */
import type { Command } from 'commander';
import { adminClient, type GlobalOptions } from './admin-connection.js';
import { printRecord, printRows, type OutputFormat } from './output.js';

const globals = (cmd: Command) => cmd.optsWithGlobals() as GlobalOptions & { outputFormat: OutputFormat };
const path = (name?: string) =>
  name === undefined ? '/config/remote' : `/config/remote/${encodeURIComponent(name)}`;

interface RemoteOptions {
  host?: string;
  port?: number;
  authId?: string;
  password?: string;
  fingerprint?: string;
  comment?: string;
}

const withRemoteOptions = (cmd: Command): Command =>
  cmd
    .option('--host <host>', 'DNS name or IP address')
    .option('--port <port>', 'port (default 8007)', (v) => Number(v))
    .option('--auth-id <auth-id>', 'user@realm, or an API token user@realm!name')
    .option('--password <secret>', 'password or token secret (or STOWAGE_REMOTE_PASSWORD)')
    .option('--fingerprint <fp>', 'SHA-256 fingerprint of its certificate (aa:bb:...)')
    .option('--comment <text>');

function remoteFields(o: RemoteOptions): Record<string, unknown> {
  return {
    host: o.host,
    port: o.port,
    'auth-id': o.authId,
    password: o.password ?? process.env.STOWAGE_REMOTE_PASSWORD,
    fingerprint: o.fingerprint,
    comment: o.comment,
  };
}

export function registerRemoteCommands(program: Command): void {
  const remote = program.command('remote').description('remote backup servers to sync with (config/remote)');

  remote
    .command('list')
    .description('list remotes')
    .action(async (_o, cmd: Command) => {
      const g = globals(cmd);
      const rows = await (await adminClient(g)).call<Array<Record<string, unknown>>>('GET', path());
      printRows(
        rows,
        [
          { header: 'name', value: (r) => String(r.name) },
          { header: 'host', value: (r) => String(r.host) },
          { header: 'port', value: (r) => (r.port === undefined ? undefined : String(r.port)) },
          { header: 'auth-id', value: (r) => String(r['auth-id']) },
          {
            header: 'fingerprint',
            value: (r) => (r.fingerprint === undefined ? undefined : String(r.fingerprint)),
          },
          { header: 'comment', value: (r) => (r.comment === undefined ? undefined : String(r.comment)) },
        ],
        g.outputFormat,
      );
    });

  remote
    .command('show <name>')
    .description('show a remote (never its password)')
    .action(async (name: string, _o, cmd: Command) => {
      const g = globals(cmd);
      printRecord(
        await (await adminClient(g)).call<Record<string, unknown>>('GET', path(name)),
        g.outputFormat,
      );
    });

  withRemoteOptions(remote.command('create <name>').description('add a remote')).action(
    async (name: string, o: RemoteOptions, cmd: Command) => {
      await (await adminClient(globals(cmd))).call('POST', path(), { name, ...remoteFields(o) });
      process.stdout.write(`remote '${name}' created\n`);
    },
  );

  withRemoteOptions(remote.command('update <name>').description('change a remote'))
    .option('--delete <property...>', 'properties to remove (comment, fingerprint, port)')
    .action(async (name: string, o: RemoteOptions & { delete?: string[] }, cmd: Command) => {
      await (
        await adminClient(globals(cmd))
      ).call('PUT', path(name), { ...remoteFields(o), ...(o.delete && { delete: o.delete }) });
      process.stdout.write(`remote '${name}' updated\n`);
    });

  remote
    .command('remove <name>')
    .description('remove a remote (refused while a sync job uses it)')
    .action(async (name: string, _o, cmd: Command) => {
      await (await adminClient(globals(cmd))).call('DELETE', path(name));
      process.stdout.write(`remote '${name}' removed\n`);
    });

  remote
    .command('scan <name> [store]')
    .description("list a remote's datastores, or the backup groups of one of them")
    .option('--ns <namespace>', 'namespace of the groups')
    .action(async (name: string, store: string | undefined, o: { ns?: string }, cmd: Command) => {
      const g = globals(cmd);
      const client = await adminClient(g);
      if (store === undefined) {
        const stores = await client.call<Array<Record<string, unknown>>>('GET', `${path(name)}/scan`);
        printRows(
          stores,
          [
            { header: 'store', value: (s) => String(s.store) },
            { header: 'comment', value: (s) => (s.comment === undefined ? undefined : String(s.comment)) },
          ],
          g.outputFormat,
        );
        return;
      }
      const groups = await client.call<Array<Record<string, unknown>>>(
        'GET',
        `${path(name)}/scan/${encodeURIComponent(store)}/groups`,
        o.ns ? { namespace: o.ns } : {},
      );
      printRows(
        groups,
        [
          { header: 'group', value: (r) => `${String(r['backup-type'])}/${String(r['backup-id'])}` },
          { header: 'snapshots', value: (r) => String(r['backup-count']) },
          { header: 'owner', value: (r) => (r.owner === undefined ? undefined : String(r.owner)) },
        ],
        g.outputFormat,
      );
    });
}
