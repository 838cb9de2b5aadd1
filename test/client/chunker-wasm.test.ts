import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('../..', import.meta.url));

test('the committed WebAssembly scanner is what its AssemblyScript source compiles to', () => {
  // src/client/chunker-scan-wasm.ts is generated and committed; a change to wasm/chunker-scan.ts
  // that was not rebuilt (or a hand edit of the module) would ship a scanner nobody reviewed.
  const r = spawnSync(process.execPath, ['scripts/build-wasm.mjs', '--check'], {
    cwd: root,
    encoding: 'utf8',
  });
  assert.equal(r.status, 0, r.stderr);
});
