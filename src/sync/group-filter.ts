/**
 * PBS's group filters for sync jobs (`pbs-api-types` `GroupFilter`): `type:host`,
 * `group:vm/100`, `regex:^ct/1..$`, each optionally prefixed by `exclude:`. A group is synced when
 * it matches at least one include filter (or there is none) and no exclude filter.
 */
import { BadRequestError } from '../errors.js';
import type { BackupGroup } from '../datastore/index.js';
import { BACKUP_ID_REGEX, BACKUP_TYPE_REGEX } from '../api-types/names.js';

export interface GroupFilter {
  exclude: boolean;
  kind: 'type' | 'group' | 'regex';
  value: string;
  regex?: RegExp;
}

export function parseGroupFilter(text: string, param = 'group-filter'): GroupFilter {
  let rest = text;
  const exclude = rest.startsWith('exclude:');
  if (exclude) rest = rest.slice('exclude:'.length);
  const colon = rest.indexOf(':');
  const kind = colon === -1 ? '' : rest.slice(0, colon);
  const value = rest.slice(colon + 1);
  const bad = (why: string) => new BadRequestError(`invalid group filter '${text}': ${why}`, { param });
  switch (kind) {
    case 'type':
      if (!BACKUP_TYPE_REGEX.test(value)) throw bad('type must be vm, ct or host');
      return { exclude, kind, value };
    case 'group': {
      const [type, id, more] = value.split('/');
      if (more !== undefined || !type || !id || !BACKUP_TYPE_REGEX.test(type) || !BACKUP_ID_REGEX.test(id)) {
        throw bad('group must be TYPE/ID');
      }
      return { exclude, kind, value };
    }
    case 'regex':
      try {
        return { exclude, kind, value, regex: new RegExp(value) };
      } catch (err) {
        throw bad((err as Error).message);
      }
    default:
      throw bad('must be type:TYPE, group:TYPE/ID or regex:REGEX, optionally prefixed by exclude:');
  }
}

function matches(f: GroupFilter, group: BackupGroup): boolean {
  switch (f.kind) {
    case 'type':
      return group.type === f.value;
    case 'group':
      return `${group.type}/${group.id}` === f.value;
    case 'regex':
      return f.regex!.test(`${group.type}/${group.id}`);
  }
}

/** Whether `group` passes `filters` (PBS `apply_filters`). */
export function groupPasses(filters: readonly GroupFilter[], group: BackupGroup): boolean {
  const includes = filters.filter((f) => !f.exclude);
  if (includes.length > 0 && !includes.some((f) => matches(f, group))) return false;
  return !filters.some((f) => f.exclude && matches(f, group));
}
