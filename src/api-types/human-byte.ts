/**
 * Byte sizes as PBS writes them (proxmox-human-byte): a number with an optional unit — `B`,
 * decimal `KB` `MB` `GB` `TB` `PB` (also `K`, `M`, …), binary `KiB` `MiB` `GiB` `TiB` `PiB` (also
 * `Ki`, …), any case, a space allowed before the unit. Used by the sync rate limits (`rate-in`,
 * `burst-in`, `rate-out`, `burst-out`). Pure.
 */
import { BadRequestError } from '../errors.js';

const FACTORS: Record<string, number> = {
  '': 1,
  k: 1e3,
  m: 1e6,
  g: 1e9,
  t: 1e12,
  p: 1e15,
  ki: 2 ** 10,
  mi: 2 ** 20,
  gi: 2 ** 30,
  ti: 2 ** 40,
  pi: 2 ** 50,
};

/** Bytes of `text` (rounded down); 400 naming `param` when it is not a byte size. */
export function parseHumanByte(text: string, param: string): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*([kmgtp]i?)?b?\s*$/i.exec(text);
  if (!m) {
    throw new BadRequestError(
      `byte-size parse error for '${text}': expected a number with an optional unit (KiB, MB, ...)`,
      {
        param,
      },
    );
  }
  return Math.floor(Number(m[1]) * FACTORS[(m[2] ?? '').toLowerCase()]!);
}
