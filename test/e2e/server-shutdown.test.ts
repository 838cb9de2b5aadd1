import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ApiClient, openProtocolSession, type ProtocolSession } from '../../src/client/connection.js';
import { ServerProcess, freePort } from '../helpers/cli.js';

const PASSWORD = 'shutdown-test-pw1';
let root: string;

before(() => {
  root = mkdtempSync(join(tmpdir(), 'stowage-shutdown-'));
});
after(() => rmSync(root, { recursive: true, force: true }));

async function startServer(name: string, extra: string[]): Promise<{ server: ServerProcess; port: number }> {
  const port = await freePort();
  const env = {
    STOWAGE_DATA_DIR: join(root, name),
    STOWAGE_CONFIG_DIR: join(root, name, 'etc'),
    STOWAGE_RUN_DIR: join(root, name, 'run'),
    STOWAGE_ROOT_PASSWORD: PASSWORD,
  };
  const server = new ServerProcess(['--quickstart', '--listen', `127.0.0.1:${port}`, ...extra], env);
  await server.started();
  return { server, port };
}

/** A backup session that uploads nothing and never finishes: a running task until it ends. */
async function idleBackupSession(server: ServerProcess, port: number): Promise<ProtocolSession> {
  const fingerprint = /fingerprint: (\S+)/.exec(server.output)![1]!;
  const target = { host: '127.0.0.1', port };
  const api = new ApiClient(target, { fingerprint });
  const t = await api.call<{ ticket: string }>('POST', '/access/ticket', {
    username: 'root@pam',
    password: PASSWORD,
  });
  return openProtocolSession({
    target,
    policy: { fingerprint },
    credentials: { kind: 'ticket', ticket: t.ticket },
    path: '/api2/json/backup',
    protocol: 'proxmox-backup-protocol-v1',
    query: { store: 'local', 'backup-type': 'host', 'backup-id': 'idle', 'backup-time': 1_700_000_000 },
  });
}

function exitOf(server: ServerProcess): Promise<number | null> {
  return new Promise((r) =>
    server.child.exitCode !== null ? r(server.child.exitCode) : server.child.once('exit', (code) => r(code)),
  );
}

test('SIGTERM waits for running tasks only as long as the grace period, then aborts them and exits', async () => {
  const { server, port } = await startServer('grace', ['--shutdown-grace', '2']);
  try {
    const session = await idleBackupSession(server, port);
    const sent = Date.now();
    server.child.kill('SIGTERM');
    const code = await exitOf(server);
    const took = Date.now() - sent;
    assert.match(
      server.output,
      /received SIGTERM, shutting down - waiting up to 2 s for 1 running task\(s\)/,
    );
    assert.match(server.output, /grace period of 2 s over: aborted 1 running task\(s\)/);
    assert.ok(took >= 2000, `exited after ${took} ms, before the grace period ended`);
    assert.notEqual(code, null);
    // the session was ended, not left hanging
    await assert.rejects(session.request('GET', 'previous_backup_time'), /connection to the server was lost/);
  } finally {
    server.child.kill('SIGKILL');
  }
});

test('a second SIGTERM during the grace period exits at once', async () => {
  const { server, port } = await startServer('twice', ['--shutdown-grace', '600']);
  try {
    const session = await idleBackupSession(server, port);
    server.child.kill('SIGTERM');
    await new Promise((r) => setTimeout(r, 500));
    assert.equal(server.child.exitCode, null, 'still waiting for the session after the first signal');
    server.child.kill('SIGTERM');
    assert.equal(await exitOf(server), 1);
    assert.match(server.output, /received SIGTERM again, exiting now/);
    session.destroy();
  } finally {
    server.child.kill('SIGKILL');
  }
});

test('a bad --shutdown-grace is refused by name', async () => {
  const port = await freePort();
  const server = new ServerProcess(['--listen', `127.0.0.1:${port}`, '--shutdown-grace', 'soon'], {
    STOWAGE_DATA_DIR: join(root, 'bad'),
  });
  await assert.rejects(server.started(), /--shutdown-grace: 'soon' is not a whole number of seconds/);
});
