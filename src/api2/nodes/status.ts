/**
 * `GET /nodes/{node}/status` (PBS `src/api2/node/status.rs`): memory, swap, root filesystem,
 * uptime, load, kernel, CPU and boot mode of the host, and the fingerprint of the certificate
 * the server presents. PBS's `POST` (reboot/shutdown) is not offered: Stowage does not manage
 * the host.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Type } from 'typebox';
import { defineRoute, type AnyRoute } from '../../http/route.js';
import { NodeSchema } from '../../http/schemas.js';
import { certFingerprint } from '../../http/tls.js';
import { readHostStatus } from '../../sys/host-status.js';
import { checkNode } from './check-node.js';

const Counters = Type.Object({ total: Type.Integer(), used: Type.Integer(), free: Type.Integer() });

export const NodeStatusSchema = Type.Object({
  memory: Counters,
  swap: Counters,
  root: Type.Object({ total: Type.Integer(), used: Type.Integer(), avail: Type.Integer() }),
  uptime: Type.Integer(),
  loadavg: Type.Array(Type.Number(), { minItems: 3, maxItems: 3 }),
  kversion: Type.String(),
  'current-kernel': Type.Object({
    sysname: Type.String(),
    release: Type.String(),
    version: Type.String(),
    machine: Type.String(),
  }),
  cpuinfo: Type.Object({ model: Type.String(), sockets: Type.Integer(), cpus: Type.Integer() }),
  cpu: Type.Number(),
  wait: Type.Number(),
  info: Type.Object({ fingerprint: Type.String() }),
  'boot-info': Type.Object({
    mode: Type.Union([Type.Literal('efi'), Type.Literal('legacy-bios')]),
    secureboot: Type.Boolean(),
  }),
});

export const routes: AnyRoute[] = [
  defineRoute({
    method: 'GET',
    path: '/nodes/:node/status',
    params: Type.Object({ node: NodeSchema }),
    query: Type.Object({}),
    permission: { path: '/system/status', privs: ['Sys.Audit'] },
    description:
      "Read memory, CPU and root filesystem usage, load, uptime, kernel and boot mode of this node, and the SHA-256 fingerprint of its HTTPS certificate. `{node}` is `localhost` or this node's name.",
    returns: NodeStatusSchema,
    handler: ({ params, server }) => {
      checkNode(server, params.node);
      // read per request as PBS does (`cert_info()`), so a replaced certificate shows at once
      const fingerprint = certFingerprint(readFileSync(join(server.paths.configDir, 'proxy.pem')));
      return { ...readHostStatus(), info: { fingerprint } };
    },
  }),
];
