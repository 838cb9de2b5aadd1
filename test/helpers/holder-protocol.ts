/**
 * The protocol of the holder processes (test/helpers/holder-process.ts drives them): one JSON
 * command per line on stdin, one JSON answer per line on stdout, a `{ready}` line first. The
 * fixtures differ only in how they admit and change modes (the local one through
 * `lookupDatastore`, the etcd one through its backend), which they pass in as a HolderAdapter.
 */
import { createInterface } from 'node:readline';
import type { AdmissionBackend } from '../../src/maintenance/admission-backend.js';
import type { HeldLock, LockName } from '../../src/maintenance/lock-service.js';
import type { OperationInfo } from '../../src/maintenance/operation-registry.js';
import {
  parseMaintenanceMode,
  type HoldType,
  type MaintenanceMode,
  type OperationClass,
} from '../../src/maintenance/maintenance-mode.js';

export interface HolderAdapter {
  backend: AdmissionBackend;
  /** Admit an operation; its id and how to end it. */
  admit(
    store: string,
    op: OperationClass,
    info: OperationInfo,
  ): Promise<{ id: number; release(): Promise<void> }>;
  /** Set or clear the mode as the fixture's surface does; the change's sequence. */
  setMode(store: string, mode: MaintenanceMode | undefined): Promise<number>;
  /** Commands only this fixture knows (undefined: unknown). */
  other?(c: { cmd: string }): Promise<unknown> | undefined;
  close(): void;
}

type Command =
  | { cmd: 'lookup'; store: string; op: OperationClass; kind?: string; detail?: string; authId?: string }
  | { cmd: 'release'; id: number }
  | { cmd: 'set-mode'; store: string; mode: string | null }
  | { cmd: 'set-hold'; store: string; source: string; hold: { type: HoldType; message: string } | null }
  | { cmd: 'admit-loop'; store: string; op: OperationClass; durationMs: number }
  | { cmd: 'flip-loop'; store: string; modes: Array<string | null>; count: number; pauseMs: number }
  | { cmd: 'take-lock'; name: LockName; shared?: boolean };

const modeOf = (m: string | null) => (m === null ? undefined : parseMaintenanceMode(m));

/** Serve the protocol on stdin/stdout until stdin closes. */
export function serveHolderProtocol(adapter: HolderAdapter): void {
  const held = new Map<number, { release(): Promise<void> }>();
  const locks: HeldLock[] = [];

  async function handle(c: Command): Promise<unknown> {
    switch (c.cmd) {
      case 'lookup': {
        const h = await adapter.admit(c.store, c.op, {
          kind: c.kind ?? 'test',
          ...(c.detail !== undefined && { detail: c.detail }),
          ...(c.authId !== undefined && { authId: c.authId }),
        });
        held.set(h.id, h);
        return { id: h.id };
      }
      case 'release':
        await held.get(c.id)?.release();
        held.delete(c.id);
        return {};
      case 'set-mode':
        return { sequence: await adapter.setMode(c.store, modeOf(c.mode)) };
      case 'set-hold':
        return { sequence: (await adapter.backend.setHold(c.store, c.source, c.hold ?? undefined)).sequence };
      case 'admit-loop': {
        // Admit and release as fast as possible; report the id of every admitted operation.
        const admitted: number[] = [];
        let refused = 0;
        const end = Date.now() + c.durationMs;
        while (Date.now() < end) {
          try {
            const h = await adapter.admit(c.store, c.op, { kind: 'race' });
            admitted.push(h.id);
            await h.release();
          } catch (err) {
            if ((err as { code?: string }).code !== 'MAINTENANCE') throw err;
            refused++;
          }
        }
        return { admitted, refused };
      }
      case 'flip-loop': {
        // Change the mode `count` times cycling through `modes`; log each change with its sequence.
        const changes: Array<{ mode: string | null; sequence: number }> = [];
        for (let i = 0; i < c.count; i++) {
          const mode = c.modes[i % c.modes.length]!;
          changes.push({ mode, sequence: await adapter.setMode(c.store, modeOf(mode)) });
          await new Promise((resolve) => setTimeout(resolve, c.pauseMs));
        }
        return { changes };
      }
      case 'take-lock': {
        // JSON-able names only (job, gc, chunk); held until the process ends
        const lock = await adapter.backend.locks.tryAcquire(c.name, { shared: c.shared });
        if (lock) locks.push(lock);
        return { taken: lock !== undefined };
      }
      default: {
        const r = adapter.other?.(c);
        if (r === undefined) throw new Error(`unknown holder command ${(c as { cmd: string }).cmd}`);
        return r;
      }
    }
  }

  const rl = createInterface({ input: process.stdin });
  rl.on('line', (line) => {
    handle(JSON.parse(line) as Command).then(
      (r) => process.stdout.write(JSON.stringify({ ok: true, ...(r as object) }) + '\n'),
      (err: { code?: string; message?: string }) =>
        process.stdout.write(JSON.stringify({ ok: false, code: err.code, message: err.message }) + '\n'),
    );
  });
  rl.on('close', () => {
    adapter.close();
    process.exit(0);
  });
  process.stdout.write(JSON.stringify({ ok: true, ready: true, pid: process.pid }) + '\n');
}
