import { test } from 'node:test';
import assert from 'node:assert/strict';
import { buildClientCli } from '../../src/cli/client/main.js';

const ALL = ['backup', 'restore', 'catalog', 'login', 'snapshots', 'list', 'status'];

async function commandsFor(args: string[]): Promise<string[]> {
  const program = await buildClientCli(['node', 'stowage-client', ...args]);
  return program.commands.map((c) => c.name());
}

test('the client registers only the named command, and every command for help or an unknown name', async () => {
  assert.deepEqual(await commandsFor(['backup', '--repository', 'x', 'root.pxar:/tmp']), ['backup']);
  assert.deepEqual(await commandsFor(['--verbose', 'restore', 'snap', 'root.pxar', '/tmp/t']), ['restore']);
  assert.deepEqual(await commandsFor(['status']), ['login', 'snapshots', 'list', 'status']);
  assert.deepEqual(await commandsFor([]), ALL);
  assert.deepEqual(await commandsFor(['--help']), ALL);
  assert.deepEqual(await commandsFor(['help', 'backup']), ALL);
  assert.deepEqual(await commandsFor(['bakup']), ALL);
});
