/**
 * `stowage s3 check ID BUCKET` and `stowage s3 endpoint list|show|create|update|remove|list-buckets`
 * (`config/s3`, `admin/s3`), as PBS 4's `proxmox-backup-manager s3` commands. The secret key comes
 * from `--secret-key` or, to keep it out of `ps`, from STOWAGE_S3_SECRET_KEY. Docs: docs/s3.md.
 */
import type { Command } from 'commander';
import { adminClient, type GlobalOptions } from './admin-connection.js';
import { printRecord, printRows, type OutputFormat } from './output.js';

const globals = (cmd: Command) => cmd.optsWithGlobals() as GlobalOptions & { outputFormat: OutputFormat };
const path = (id?: string) => (id === undefined ? '/config/s3' : `/config/s3/${encodeURIComponent(id)}`);

interface EndpointOptions {
  endpoint?: string;
  port?: string;
  region?: string;
  accessKey?: string;
  secretKey?: string;
  pathStyle?: boolean;
  fingerprint?: string;
  putRateLimit?: string;
  rateIn?: string;
  burstIn?: string;
  rateOut?: string;
  burstOut?: string;
}

const withEndpointOptions = (cmd: Command): Command =>
  cmd
    .option('--endpoint <host>', 'host name or IP (may hold {{bucket}}. and {{region}} templates)')
    .option('--port <port>', 'port (default 443)')
    .option('--region <region>', 'region (default us-west-1)')
    .option('--access-key <key>')
    .option('--secret-key <secret>', 'secret key (or STOWAGE_S3_SECRET_KEY)')
    .option('--path-style', 'the bucket in the path instead of the host name')
    .option('--fingerprint <fp>', "SHA-256 fingerprint of a self-signed endpoint's certificate")
    .option('--put-rate-limit <n>', 'PUT requests per second at most')
    .option('--rate-in <rate>', 'download rate limit, e.g. 10MiB (per second)')
    .option('--burst-in <size>', 'download burst')
    .option('--rate-out <rate>', 'upload rate limit, e.g. 10MiB (per second)')
    .option('--burst-out <size>', 'upload burst');

/** The API's fields; the server checks them (one place for the rules). */
function endpointFields(o: EndpointOptions): Record<string, unknown> {
  return {
    endpoint: o.endpoint,
    port: integerOrText(o.port),
    region: o.region,
    'access-key': o.accessKey,
    'secret-key': o.secretKey ?? process.env.STOWAGE_S3_SECRET_KEY,
    'path-style': o.pathStyle,
    fingerprint: o.fingerprint,
    'put-rate-limit': integerOrText(o.putRateLimit),
    'rate-in': o.rateIn,
    'burst-in': o.burstIn,
    'rate-out': o.rateOut,
    'burst-out': o.burstOut,
  };
}

const text = (v: unknown) => (v === undefined ? undefined : String(v));
/** A number when it reads as one; anything else goes as typed, for the server to refuse by name. */
const integerOrText = (v: string | undefined) => (v !== undefined && /^\d+$/.test(v) ? Number(v) : v);

export function registerS3Commands(program: Command): void {
  const s3 = program.command('s3').description('S3 endpoints for S3 datastores (config/s3)');

  s3.command('check <s3-endpoint-id> <bucket>')
    .description("check an endpoint's credentials and bucket: head it, put, read and delete a test object")
    .option(
      '--store-prefix <prefix>',
      'where in the bucket the test object goes (commonly the datastore name)',
    )
    .action(async (id: string, bucket: string, o: { storePrefix?: string }, cmd: Command) => {
      await (
        await adminClient(globals(cmd))
      ).call('PUT', `/admin/s3/${encodeURIComponent(id)}/check`, {
        bucket,
        'store-prefix': o.storePrefix,
      });
      process.stdout.write(`S3 endpoint '${id}' and bucket '${bucket}' are usable\n`);
    });

  const endpoint = s3.command('endpoint').description('S3 endpoint configurations');

  endpoint
    .command('list')
    .description('list S3 endpoints (never their secret keys)')
    .action(async (_o, cmd: Command) => {
      const g = globals(cmd);
      const rows = await (await adminClient(g)).call<Array<Record<string, unknown>>>('GET', path());
      printRows(
        rows,
        ['id', 'endpoint', 'port', 'region', 'access-key', 'fingerprint', 'path-style'].map((k) => ({
          header: k,
          value: (r: Record<string, unknown>) => text(r[k]),
        })),
        g.outputFormat,
      );
    });

  endpoint
    .command('show <id>')
    .description('show an S3 endpoint (never its secret key)')
    .action(async (id: string, _o, cmd: Command) => {
      const g = globals(cmd);
      printRecord(
        await (await adminClient(g)).call<Record<string, unknown>>('GET', path(id)),
        g.outputFormat,
      );
    });

  withEndpointOptions(endpoint.command('create <id>').description('add an S3 endpoint')).action(
    async (id: string, o: EndpointOptions, cmd: Command) => {
      await (await adminClient(globals(cmd))).call('POST', path(), { id, ...endpointFields(o) });
      process.stdout.write(`S3 endpoint '${id}' created\n`);
    },
  );

  withEndpointOptions(endpoint.command('update <id>').description('change an S3 endpoint'))
    .option('--delete <property...>', 'properties to remove (port, region, fingerprint, rate-in, ...)')
    .action(async (id: string, o: EndpointOptions & { delete?: string[] }, cmd: Command) => {
      await (
        await adminClient(globals(cmd))
      ).call('PUT', path(id), { ...endpointFields(o), ...(o.delete && { delete: o.delete }) });
      process.stdout.write(`S3 endpoint '${id}' updated\n`);
    });

  endpoint
    .command('remove <id>')
    .description('remove an S3 endpoint (refused while a datastore uses it)')
    .action(async (id: string, _o, cmd: Command) => {
      await (await adminClient(globals(cmd))).call('DELETE', path(id));
      process.stdout.write(`S3 endpoint '${id}' removed\n`);
    });

  endpoint
    .command('list-buckets <s3-endpoint-id>')
    .description("list the buckets the endpoint's credentials see")
    .action(async (id: string, _o, cmd: Command) => {
      const g = globals(cmd);
      const rows = await (
        await adminClient(g)
      ).call<Array<Record<string, unknown>>>('GET', `${path(id)}/list-buckets`);
      printRows(rows, [{ header: 'name', value: (r) => text(r.name) }], g.outputFormat);
    });
}
