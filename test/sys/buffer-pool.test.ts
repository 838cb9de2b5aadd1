import assert from 'node:assert/strict';
import { test } from 'node:test';
import { MessageChannel } from 'node:worker_threads';
import { BufferPool, transferList } from '../../src/sys/buffer-pool.js';

test('a buffer given back is the memory the next take hands out', () => {
  const pool = new BufferPool(1024, 4);
  const a = pool.take(100);
  assert.equal(a.length, 100);
  a.fill(7);
  pool.give(a);
  const b = pool.take(300);
  assert.equal(b.length, 300);
  assert.equal(b.buffer, a.buffer, 'same memory');
  assert.equal(b[0], 7, 'not cleared: it is reused as it is');
});

test('a request beyond the capacity gets memory of its own, never pooled', () => {
  const pool = new BufferPool(1024, 4);
  const big = pool.take(2000);
  assert.equal(big.length, 2000);
  pool.give(big);
  assert.equal(pool.idle, 0);
});

test('the pool keeps at most maxFree idle buffers, and each one once', () => {
  const pool = new BufferPool(1024, 2);
  const bufs = [pool.take(10), pool.take(10), pool.take(10)];
  for (const b of bufs) pool.give(b);
  assert.equal(pool.idle, 2);
  pool.give(bufs[0]!);
  pool.give(bufs[0]!);
  assert.equal(pool.idle, 2);
  const x = pool.take(10);
  const y = pool.take(10);
  assert.notEqual(x.buffer, y.buffer, 'two takes never share memory');
});

test("foreign memory (a small Buffer on Node's shared slab) is never pooled or transferred", () => {
  const pool = new BufferPool(1024, 4);
  const small = Buffer.from('hello');
  pool.give(small);
  assert.equal(pool.idle, 0);
  assert.deepEqual(transferList(small), [], 'transferring the slab would empty other Buffers');
  const own = Buffer.allocUnsafeSlow(64);
  assert.deepEqual(transferList(own), [own.buffer], 'a buffer that owns all its memory moves');
});

test('pooled memory is shared with another thread, not transferred, and pooled there once', async () => {
  const pool = new BufferPool(1024, 4);
  const other = new BufferPool(1024, 4);
  const view = pool.take(10).subarray(2, 6);
  view.set([1, 2, 3, 4]);
  assert.deepEqual(transferList(view), [], 'shared memory is never in a transfer list');
  const { port1, port2 } = new MessageChannel();
  const receive = () => new Promise<Uint8Array>((resolve) => port2.once('message', resolve));
  let got = receive();
  port1.postMessage(view);
  const received = await got;
  assert.deepEqual([...received], [1, 2, 3, 4]);
  assert.notEqual(received.buffer, view.buffer, 'a new object in the receiver...');
  received[0] = 9;
  assert.equal(view[0], 9, '...on the same memory');
  other.give(received);
  got = receive();
  port1.postMessage(view);
  other.give(await got); // the same memory once more, as another object: still pooled once
  port1.close();
  assert.equal(other.idle, 1);
  const reused = other.take(1000);
  assert.equal(reused.length, 1000);
  reused[3] = 42;
  assert.equal(view[1], 42, 'the receiver hands out the memory it was given');
});
