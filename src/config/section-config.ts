/**
 * PBS section-config files (`datastore.cfg`, `user.cfg`, `acl.cfg`-style): a section header
 * `TYPE: ID` followed by tab-indented `key value` lines, sections separated by a blank line.
 * Pure codec: text in, ordered sections out. `#` comment lines are dropped on parse (as PBS does),
 * so a file rewritten by Stowage never carries stale comments; everything else round-trips
 * exactly, including key order.
 */
import { BadConfigError } from '../errors.js';

export interface Section {
  type: string;
  id: string;
  /** Properties in file order. Values are raw strings; typing is the caller's job. */
  props: Array<[key: string, value: string]>;
}

// PBS splits a header at its first ':' and trims both halves, so `datastore:x` is valid too.
const HEADER = /^([a-z][a-z0-9-]*):\s*(\S+)\s*$/;
const PROPERTY = /^\s+([a-z][a-z0-9_-]*)(?:\s+(.*?))?\s*$/i;

const KEY = /^[a-z][a-z0-9_-]*$/i;

/** 1-based line numbers of what parseSectionConfig read, kept beside (not in) the plain Section. */
const LINES = new WeakMap<Section, { header: number; props: Map<string, number> }>();

/**
 * The 1-based line a parsed section's header (or, with `key`, one of its properties) came from,
 * so that a caller validating values can say where the bad one is. Undefined for sections not
 * produced by parseSectionConfig.
 */
export function sectionLine(section: Section, key?: string): number | undefined {
  const lines = LINES.get(section);
  return key === undefined ? lines?.header : lines?.props.get(key);
}

/**
 * Parse a section-config file; `file` names it in errors. Keys in `repeatable` may appear more
 * than once in a section: proxmox-section-config writes an array property as one line per item
 * (notifications.cfg's `target`, `mailto`, `header`).
 */
export function parseSectionConfig(
  text: string,
  file = 'section config',
  repeatable: ReadonlySet<string> = new Set(),
): Section[] {
  const sections: Section[] = [];
  let current: Section | undefined;
  const lines = text.split('\n');
  lines.forEach((line, idx) => {
    const where = `${file} line ${idx + 1}`;
    if (line.trim() === '') {
      current = undefined;
      return;
    }
    if (line.trimStart().startsWith('#')) return;
    const header = HEADER.exec(line);
    if (header && !/^\s/.test(line)) {
      const [, type, id] = header as unknown as [string, string, string];
      if (sections.some((s) => s.type === type && s.id === id)) {
        throw new BadConfigError(`${where}: duplicate section '${type}: ${id}'`);
      }
      current = { type, id, props: [] };
      sections.push(current);
      LINES.set(current, { header: idx + 1, props: new Map() });
      return;
    }
    const prop = PROPERTY.exec(line);
    if (!prop) throw new BadConfigError(`${where}: cannot parse '${line}'`);
    if (!current) throw new BadConfigError(`${where}: property outside of a section`);
    const key = prop[1]!;
    if (!repeatable.has(key) && current.props.some(([k]) => k === key)) {
      throw new BadConfigError(`${where}: duplicate property '${key}' in section '${current.id}'`);
    }
    current.props.push([key, prop[2] ?? '']);
    LINES.get(current)?.props.set(key, idx + 1);
  });
  return sections;
}

/**
 * Serialize sections; the inverse of parseSectionConfig for comment-free input. Refuses anything
 * that would read back differently (a line break, a value with surrounding whitespace, which the
 * parser trims as PBS does, an id with blanks, a malformed key) rather than corrupt the file, and
 * any control character, as PBS's `default_format_section_content` does.
 */
export function formatSectionConfig(
  sections: readonly Section[],
  repeatable: ReadonlySet<string> = new Set(),
): string {
  const headers = new Set<string>();
  return sections
    .map((s) => {
      const header = `${s.type}: ${s.id}`;
      if (!/^[a-z][a-z0-9-]*$/.test(s.type) || !/^\S+$/.test(s.id)) {
        throw new BadConfigError(`cannot write section header '${header}'`);
      }
      if (headers.has(header)) throw new BadConfigError(`duplicate section '${header}'`);
      headers.add(header);
      const keys = new Set<string>();
      for (const [k, v] of s.props) {
        if (!KEY.test(k)) throw new BadConfigError(`invalid property name '${k}' in '${s.id}'`);
        if (keys.has(k) && !repeatable.has(k))
          throw new BadConfigError(`duplicate property '${k}' in section '${s.id}'`);
        keys.add(k);
        if (/[\r\n]/.test(v)) throw new BadConfigError(`property '${k}' of '${s.id}' contains a newline`);
        if (/[\x00-\x1f\x7f]/.test(v)) {
          throw new BadConfigError(`property '${k}' of '${s.id}' contains a control character`);
        }
        if (v.trim() !== v) {
          throw new BadConfigError(`property '${k}' of '${s.id}' has leading or trailing whitespace`);
        }
      }
      const props = s.props.map(([k, v]) => (v === '' ? `\t${k}` : `\t${k} ${v}`));
      return [header, ...props].join('\n') + '\n';
    })
    .join('\n');
}

/** Read one property of a section. */
export function sectionProp(section: Section, key: string): string | undefined {
  return section.props.find(([k]) => k === key)?.[1];
}

/** Set (or, with undefined, remove) one property, keeping the order of the others. */
export function setSectionProp(section: Section, key: string, value: string | undefined): void {
  const idx = section.props.findIndex(([k]) => k === key);
  if (value === undefined) {
    if (idx !== -1) section.props.splice(idx, 1);
  } else if (idx === -1) section.props.push([key, value]);
  else section.props[idx] = [key, value];
}
