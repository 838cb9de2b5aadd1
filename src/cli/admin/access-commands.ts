/** `stowage user|token|acl ...`: users, API tokens and permissions through the API. */
import type { Command } from 'commander';
import { BadRequestError } from '../../errors.js';
import { adminClient, type GlobalOptions } from './admin-connection.js';
import { printRecord, printRows, type OutputFormat } from './output.js';

const globals = (cmd: Command) => cmd.optsWithGlobals() as GlobalOptions & { outputFormat: OutputFormat };
const enc = encodeURIComponent;

export function registerAccessCommands(program: Command): void {
  const user = program.command('user').description('users (realm pbs) and API tokens');
  user.command('list').action(async (_o, cmd: Command) => {
    const g = globals(cmd);
    const users = await (await adminClient(g)).call<Array<Record<string, unknown>>>('GET', '/access/users');
    printRows(
      users,
      [
        { header: 'userid', value: (u) => u.userid },
        { header: 'enable', value: (u) => u.enable ?? true },
        { header: 'expire', value: (u) => u.expire ?? 0 },
        { header: 'comment', value: (u) => u.comment },
      ],
      g.outputFormat,
    );
  });
  user
    .command('create <userid>')
    .option('--password <password>', 'initial password (env STOWAGE_NEW_PASSWORD avoids the shell history)')
    .option('--comment <text>')
    .option('--email <address>')
    .action(
      async (userid: string, o: { password?: string; comment?: string; email?: string }, cmd: Command) => {
        await (
          await adminClient(globals(cmd))
        ).call('POST', '/access/users', {
          userid,
          password: o.password ?? process.env.STOWAGE_NEW_PASSWORD,
          comment: o.comment,
          email: o.email,
        });
      },
    );
  user
    .command('update <userid>')
    .option('--password <password>')
    .option('--comment <text>')
    .option('--enable <bool>', 'true or false', (v) => v === 'true' || v === '1')
    .action(
      async (userid: string, o: { password?: string; comment?: string; enable?: boolean }, cmd: Command) => {
        const client = await adminClient(globals(cmd));
        const { password, ...fields } = o;
        // PBS 4 ignores `password` on PUT /access/users; root@pam needs no confirmation password
        if (password !== undefined) await client.call('PUT', '/access/password', { userid, password });
        if (Object.keys(fields).length > 0) await client.call('PUT', `/access/users/${enc(userid)}`, fields);
      },
    );
  user.command('remove <userid>').action(async (userid: string, _o, cmd: Command) => {
    await (await adminClient(globals(cmd))).call('DELETE', `/access/users/${enc(userid)}`);
  });

  const token = program.command('token').description('API tokens (user@realm!name)');
  token
    .command('create <tokenid> [name]')
    .description("create an API token: 'user@realm!name' as PBS spells it, or user@realm name")
    .option('--comment <text>')
    .action(async (id: string, tokenName: string | undefined, o: { comment?: string }, cmd: Command) => {
      const { userid, name } = splitTokenId(id, tokenName);
      const g = globals(cmd);
      const r = await (
        await adminClient(g)
      ).call<Record<string, unknown>>('POST', `/access/users/${enc(userid)}/token/${enc(name)}`, {
        comment: o.comment,
      });
      printRecord(r, g.outputFormat);
      if (g.outputFormat === 'text') process.stdout.write('the secret is shown only once: store it now\n');
    });
  token.command('list <userid>').action(async (userid: string, _o, cmd: Command) => {
    const g = globals(cmd);
    const r = await (
      await adminClient(g)
    ).call<Array<Record<string, unknown>>>('GET', `/access/users/${enc(userid)}/token`);
    printRows(
      r,
      [
        { header: 'tokenid', value: (t) => t.tokenid },
        { header: 'enable', value: (t) => t.enable ?? true },
        { header: 'comment', value: (t) => t.comment },
      ],
      g.outputFormat,
    );
  });
  token
    .command('remove <tokenid> [name]')
    .description("remove an API token: 'user@realm!name', or user@realm name")
    .action(async (id: string, tokenName: string | undefined, _o, cmd: Command) => {
      const { userid, name } = splitTokenId(id, tokenName);
      await (
        await adminClient(globals(cmd))
      ).call('DELETE', `/access/users/${enc(userid)}/token/${enc(name)}`);
    });

  const acl = program.command('acl').description('access control lists');
  acl.command('list').action(async (_o, cmd: Command) => {
    const g = globals(cmd);
    const r = await (await adminClient(g)).call<Array<Record<string, unknown>>>('GET', '/access/acl');
    printRows(
      r,
      [
        { header: 'path', value: (e) => e.path },
        { header: 'ugid', value: (e) => e.ugid },
        { header: 'role', value: (e) => e.roleid },
        { header: 'propagate', value: (e) => e.propagate },
      ],
      g.outputFormat,
    );
  });
  acl
    .command('update <path> <role>')
    .requiredOption('--auth-id <authid>', 'user or token the role is granted to')
    .option('--no-propagate', 'do not inherit to sub-paths')
    .option('--delete', 'remove this role instead of granting it')
    .action(
      async (
        path: string,
        role: string,
        o: { authId: string; propagate: boolean; delete?: boolean },
        cmd: Command,
      ) => {
        await (
          await adminClient(globals(cmd))
        ).call('PUT', '/access/acl', {
          path,
          role,
          'auth-id': o.authId,
          propagate: o.propagate,
          delete: o.delete,
        });
      },
    );
}

/**
 * A token named as PBS spells it (`user@realm!name`) or as user and name apart; the server
 * validates both parts. Both spellings at once, or neither, is a usage error.
 */
export function splitTokenId(id: string, name: string | undefined): { userid: string; name: string } {
  const bang = id.indexOf('!');
  if (bang >= 0) {
    if (name !== undefined)
      throw new BadRequestError(`give the token as '${id}' or as user and name, not both`);
    return { userid: id.slice(0, bang), name: id.slice(bang + 1) };
  }
  if (name === undefined)
    throw new BadRequestError(`'${id}' names no token: give 'user@realm!name' or user@realm name`);
  return { userid: id, name };
}
