/**
 * A real HTTPS server (startServer, which serves the backup/reader protocols) on a throw-away
 * instance.
 */
import { startServer, type RunningServer } from '../../src/server/server.js';
import { ApiClient, type Credentials } from '../../src/client/connection.js';
import { makeInstance, type TestInstance } from '../helpers/instance.js';

export const ROOT_PASSWORD = 'root-secret-1';

export interface ProtocolServer {
  instance: TestInstance;
  server: RunningServer;
  host: string;
  port: number;
  fingerprint: string;
  root: Credentials;
  close(): Promise<void>;
}

export async function startProtocolServer(prefix = 'stowage-proto-'): Promise<ProtocolServer> {
  const instance = makeInstance(prefix);
  const server = await startServer({
    listen: { host: '127.0.0.1', port: 0 },
    paths: instance.paths,
    logger: false,
    announce: () => {},
    rootPassword: ROOT_PASSWORD,
    authFailureDelayMs: 0,
  });
  const url = new URL(server.url);
  const host = url.hostname;
  const port = Number(url.port);
  const api = new ApiClient({ host, port }, { fingerprint: server.fingerprint });
  const t = await api.call<{ ticket: string; CSRFPreventionToken: string }>('POST', '/access/ticket', {
    username: 'root@pam',
    password: ROOT_PASSWORD,
  });
  return {
    instance,
    server,
    host,
    port,
    fingerprint: server.fingerprint,
    root: { kind: 'ticket', ticket: t.ticket, csrf: t.CSRFPreventionToken },
    async close() {
      await server.close();
      instance.cleanup();
    },
  };
}
