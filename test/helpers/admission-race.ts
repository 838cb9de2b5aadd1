/**
 * The check behind the "mode changes racing with admissions" tests: given the mode changes a
 * flipping process made (each with the registry sequence at which it took effect) and the ids the
 * admitting processes got, the admissions that the mode in force at that moment refuses.
 */
import { modeAdmits, parseMaintenanceMode } from '../../src/maintenance/maintenance-mode.js';

export interface ModeChangeAt {
  mode: string | null;
  sequence: number;
}

/** `op #id admitted under TYPE` for every admission the mode in force refuses; [] when none. */
export function admissionViolations(
  changes: readonly ModeChangeAt[],
  admitted: ReadonlyArray<readonly ['read' | 'ingest', readonly number[]]>,
): string[] {
  // the mode in force for an id is the last change whose sequence is below it
  const modeAt = (id: number) => {
    let mode: string | null = null;
    for (const c of changes) if (c.sequence < id) mode = c.mode;
    return mode === null ? undefined : parseMaintenanceMode(mode);
  };
  const violations: string[] = [];
  for (const [op, ids] of admitted) {
    for (const id of ids) {
      const mode = modeAt(id);
      if (!modeAdmits(mode, op)) violations.push(`${op} #${id} admitted under ${mode?.type}`);
    }
  }
  return violations;
}
