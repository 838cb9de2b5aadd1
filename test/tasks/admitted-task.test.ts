import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { TaskManager } from '../../src/tasks/worker-task.js';
import { spawnTaskOwning } from '../../src/tasks/admitted-task.js';
import { ERR_SHUTTING_DOWN } from '../../src/errors.js';

/** A stand-in admission that records what the task did with it. */
function fakeHandle() {
  const events: string[] = [];
  return {
    events,
    release: async () => {
      events.push('release');
    },
    attachTask: (upid: string) => {
      events.push(`attach ${upid}`);
    },
  };
}

async function withManager(fn: (m: TaskManager) => Promise<void>): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'stowage-admitted-'));
  const m = new TaskManager({ tasksDir: dir, node: 'testnode', abortPollMs: 20 });
  try {
    await fn(m);
  } finally {
    await m.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

test('the task is attached to the admission and releases it once when it ends', async () => {
  await withManager(async (m) => {
    const handle = fakeHandle();
    const upid = await spawnTaskOwning(
      m,
      handle,
      { type: 'verify', id: 'store1', authId: 'root@pam' },
      async (_t, h) => {
        assert.equal(h, handle);
        handle.events.push('run');
      },
    );
    assert.equal(await m.waitForTask(upid), 'OK');
    assert.deepEqual(handle.events, [`attach ${upid}`, 'run', 'release']);
  });
});

test('a task that fails still releases its admission', async () => {
  await withManager(async (m) => {
    const handle = fakeHandle();
    const upid = await spawnTaskOwning(
      m,
      handle,
      { type: 'verify', id: undefined, authId: 'root@pam' },
      async () => {
        throw new Error('boom');
      },
    );
    assert.equal(await m.waitForTask(upid), 'boom');
    assert.deepEqual(handle.events, [`attach ${upid}`, 'release']);
  });
});

test('a task that cannot start releases the admission before the refusal reaches the caller', async () => {
  await withManager(async (m) => {
    const closing = m.close();
    const handle = fakeHandle();
    await assert.rejects(
      spawnTaskOwning(m, handle, { type: 'verify', id: 'store1', authId: 'root@pam' }, async () => {
        handle.events.push('run');
      }),
      (err) => ERR_SHUTTING_DOWN.is(err),
    );
    assert.deepEqual(handle.events, ['release']);
    await closing;
  });
});
