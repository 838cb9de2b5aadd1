/**
 * `stowage cluster status` (issue 17, docs/cluster.md): what `GET /api2/json/cluster/status`
 * answers, as tables an operator reads at a glance — the servers of the cluster with their lease,
 * state and operations, who runs the scheduled jobs, and each etcd endpoint's health as this
 * server sees it. `--output-format json` prints the API's answer as it is.
 */
import type { Command } from 'commander';
import type { ClusterStatus } from '../../cluster/cluster-status.js';
import { adminClient, type GlobalOptions } from './admin-connection.js';
import { formatTable, printJson, type OutputFormat } from './output.js';

const globals = (cmd: Command) => cmd.optsWithGlobals() as GlobalOptions & { outputFormat: OutputFormat };

/** The status as text: a heading line, the servers, then etcd. */
export function formatClusterStatus(s: ClusterStatus): string {
  if (!s.enabled) return 'not in cluster mode: the server was started without --cluster\n';
  const out = [
    `cluster ${s.prefix ?? ''} on etcd, lease TTL ${s['lease-ttl'] ?? '?'} s; this server: ${s.node ?? '?'}\n`,
    '\n',
    formatTable(s.nodes ?? [], [
      { header: 'node', value: (n) => (n.node === s.node ? `${n.node} (this server)` : n.node) },
      { header: 'state', value: (n) => n.state },
      { header: 'operations', value: (n) => n.operations },
      { header: 'scheduler', value: (n) => (n.leader ? 'leader' : '') },
      { header: 'lease', value: (n) => n.lease },
      { header: 'ttl left', value: (n) => (n.ttl === undefined ? undefined : `${n.ttl} s`) },
    ]),
  ];
  const etcd = s.etcd;
  if (etcd) {
    out.push(
      '\n',
      `etcd: ${etcd.members.length} member(s), raft leader ${etcd.leader ?? 'unknown'}\n`,
      formatTable(etcd.endpoints, [
        { header: 'endpoint', value: (e) => e.endpoint },
        { header: 'reachable', value: (e) => (e.reachable ? 'yes' : 'NO') },
        { header: 'member', value: (e) => e.member },
        { header: 'version', value: (e) => e.version },
        { header: 'leader', value: (e) => (e.leader ? 'yes' : '') },
        { header: 'errors', value: (e) => e.errors?.join('; ') },
      ]),
    );
  }
  return out.join('');
}

export function registerClusterCommands(program: Command): void {
  const cluster = program.command('cluster').description('cluster mode (several servers on one etcd)');
  cluster
    .command('status')
    .description("the cluster's servers (lease, state, operations, scheduler leader) and etcd's health")
    .action(async (_o, cmd: Command) => {
      const g = globals(cmd);
      const status = await (await adminClient(g)).call<ClusterStatus>('GET', '/cluster/status');
      if (g.outputFormat === 'text') process.stdout.write(formatClusterStatus(status));
      else printJson(status, g.outputFormat);
    });
}
