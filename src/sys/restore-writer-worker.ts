/**
 * Thread of the restore writer (restore-writer.ts): runs the file system calls of a restore's
 * batches in the order they were queued, with synchronous calls. After the first call that fails
 * it runs nothing more: every later batch is answered without running it.
 */
import { mkdirSync, symlinkSync } from 'node:fs';
import { parentPort, workerData } from 'node:worker_threads';
import {
  setFdMetadata,
  setPathMetadataSync,
  setSymlinkMetadataSync,
  writeSmallFileSync,
} from './restore-files.js';
import type { WriterAnswer, WriterBatch, WriterFailure, WriterRange } from './restore-writer.js';

const port = parentPort;
if (!port) throw new Error('restore-writer-worker must run in a worker thread');
const asRoot = (workerData as { asRoot: boolean }).asRoot;
let failed = false;

port.on('message', (batch: WriterBatch) => {
  const bytes = Buffer.from(batch.buffer);
  const view = ([off, len]: WriterRange) => bytes.subarray(off, off + len);
  let failure: WriterFailure | undefined;
  if (!failed) {
    for (const op of batch.ops) {
      try {
        switch (op.op) {
          case 'mkdir':
            mkdirSync(view(op.path), { mode: 0o700 });
            break;
          case 'file':
            writeSmallFileSync(view(op.path), view(op.data), op.size, (fd) =>
              setFdMetadata(fd, op.meta, asRoot),
            );
            break;
          case 'metadata':
            setPathMetadataSync(view(op.path), op.meta, asRoot);
            break;
          case 'symlink':
            // Node takes the target's exact bytes (names need not be UTF-8); its types say string only
            symlinkSync(view(op.target) as unknown as string, view(op.path));
            setSymlinkMetadataSync(view(op.path), op.meta, asRoot);
            break;
        }
      } catch (err) {
        const e = err as NodeJS.ErrnoException;
        failed = true;
        failure = { message: e.message, code: e.code, errno: e.errno, syscall: e.syscall };
        break;
      }
    }
  }
  const answer: WriterAnswer = { buffer: batch.buffer, failure };
  port.postMessage(answer, [batch.buffer]);
});
