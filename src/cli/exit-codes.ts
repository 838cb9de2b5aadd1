/**
 * CLI exit codes, mapped once from the error family (src/errors.ts). A refusal by maintenance mode
 * has its own code so scripts can tell "datastore unavailable, try later" from a real failure.
 */
import { isStowageError, type ErrorCode } from '../errors.js';

export const EXIT = {
  OK: 0,
  FAILURE: 1,
  USAGE: 2,
  MAINTENANCE: 75, // EX_TEMPFAIL: the datastore is in maintenance, retry later
  CONFLICT: 3,
  NOT_FOUND: 4,
  PERMISSION: 5,
  TIMEOUT: 6,
} as const;

const BY_CODE: Partial<Record<ErrorCode, number>> = {
  BAD_REQUEST: EXIT.USAGE,
  MAINTENANCE: EXIT.MAINTENANCE,
  CONFLICT: EXIT.CONFLICT,
  CONFIG_MODIFIED: EXIT.CONFLICT,
  ALREADY_EXISTS: EXIT.CONFLICT,
  PROTECTED: EXIT.CONFLICT,
  NOT_FOUND: EXIT.NOT_FOUND,
  UNAUTHORIZED: EXIT.PERMISSION,
  FORBIDDEN: EXIT.PERMISSION,
  TIMEOUT: EXIT.TIMEOUT,
  LOCK_TIMEOUT: EXIT.TIMEOUT,
};

export function exitCodeFor(err: unknown): number {
  return isStowageError(err) ? (BY_CODE[err.code] ?? EXIT.FAILURE) : EXIT.FAILURE;
}

/** Print a one-line error and exit with the mapped code. */
export function failAndExit(err: unknown): never {
  const msg = err instanceof Error ? err.message : String(err);
  process.stderr.write(`error: ${msg.split('\n')[0]}\n`);
  process.exit(exitCodeFor(err));
}
