/**
 * What a backup's progress looks like: a bar on a terminal (cli-progress, loaded only then), and
 * plain lines without escape codes in a log.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { PassThrough } from 'node:stream';
import { startProgress } from '../../src/cli/client/progress.js';

function capture(tty: boolean): { out: NodeJS.WritableStream; text: () => string } {
  const out = Object.assign(new PassThrough(), { isTTY: tty, columns: 120 });
  let text = '';
  out.on('data', (b: Buffer) => (text += b.toString()));
  return { out, text: () => text };
}

test('on a terminal a bar shows the percentage, new and reused bytes, then one summary line', () => {
  const { out, text } = capture(true);
  const p = startProgress('root.pxar.didx', 2048, { out });
  p.update({ bytes: 1024, newBytes: 512, reusedBytes: 512 });
  p.stop();
  const shown = text();
  assert.match(shown, /root\.pxar\.didx \|[█░]+\| 100% \| 1\.00 KiB \|.* new 512 B reused 512 B/);
  assert.match(shown, /\nroot\.pxar\.didx: 1\.00 KiB of 2\.00 KiB, .*, new 512 B, reused 512 B\n$/);
});

test('in a log only plain lines are written, without escape codes', () => {
  const { out, text } = capture(false);
  const p = startProgress('root.pxar.didx', 0, { out });
  p.update({ bytes: 4096 });
  p.stop();
  assert.match(text(), /^root\.pxar\.didx: 4\.00 KiB, [^\n]*\n$/);
  assert.doesNotMatch(text(), /\u001b/);
});
