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

const HEADER = /^([a-z][a-z0-9-]*):\s+(\S+)\s*$/;
const PROPERTY = /^\s+([a-z][a-z0-9_-]*)(?:\s+(.*?))?\s*$/i;

/** Parse a section-config file; `file` names it in errors. */
export function parseSectionConfig(text: string, file = 'section config'): Section[] {
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
      return;
    }
    const prop = PROPERTY.exec(line);
    if (!prop) throw new BadConfigError(`${where}: cannot parse '${line}'`);
    if (!current) throw new BadConfigError(`${where}: property outside of a section`);
    const key = prop[1]!;
    if (current.props.some(([k]) => k === key)) {
      throw new BadConfigError(`${where}: duplicate property '${key}' in section '${current.id}'`);
    }
    current.props.push([key, prop[2] ?? '']);
  });
  return sections;
}

/** Serialize sections; the inverse of parseSectionConfig for comment-free input. */
export function formatSectionConfig(sections: readonly Section[]): string {
  return sections
    .map((s) => {
      for (const [k, v] of s.props) {
        if (v.includes('\n')) throw new BadConfigError(`property '${k}' of '${s.id}' contains a newline`);
      }
      return [`${s.type}: ${s.id}`, ...s.props.map(([k, v]) => `\t${k} ${v}`)].join('\n') + '\n';
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
