/**
 * Work that runs on promises alone never lets the event loop turn: an archive walk whose files
 * need no read (unchanged, reused by reference) is a chain of microtasks from its first member to
 * its last, and meanwhile the worker threads' answers and the sockets' writes wait. A chunk hashed
 * at the start of such a walk was uploaded only after it, hundreds of milliseconds later.
 */
import { setImmediate as nextTurn } from 'node:timers/promises';

/**
 * A function to call between steps of such work: it resolves at once, or, once `budgetMs` have
 * passed since the last turn, after one turn of the event loop.
 */
export function loopTurns(budgetMs = 4): () => Promise<void> | undefined {
  let last = performance.now();
  return () => {
    const now = performance.now();
    if (now - last < budgetMs) return undefined;
    last = now;
    return nextTurn().then(() => {
      last = performance.now();
    });
  };
}
