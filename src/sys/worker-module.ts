/**
 * Starting a worker thread from a module next to the caller's: `name.js` in a build, `name.ts`
 * from sources (tests, `npm start` under tsx), where the thread needs tsx registered before it
 * can import TypeScript.
 */
import { Worker, type WorkerOptions } from 'node:worker_threads';

/** Start the worker module `name` (no extension) that lies beside `callerUrl` (its import.meta.url). */
export function startModuleWorker(callerUrl: string, name: string, options: WorkerOptions = {}): Worker {
  if (callerUrl.endsWith('.ts')) {
    const url = new URL(`./${name}.ts`, callerUrl).href;
    const api = import.meta.resolve('tsx/esm/api');
    const code = `import(${JSON.stringify(api)}).then((m) => { m.register(); return import(${JSON.stringify(url)}); })`;
    return new Worker(code, { ...options, eval: true });
  }
  return new Worker(new URL(`./${name}.js`, callerUrl), options);
}
