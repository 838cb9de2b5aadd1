/**
 * Glob patterns over archive paths, shared by the catalog and the pxar accessor (`catalog find`,
 * later `restore --pattern`).
 */
import { BadRequestError } from '../errors.js';

/**
 * A glob over '/'-separated paths, as `catalog find` and `restore --pattern` take them (the
 * pathpatterns crate's rules, as far as they go here): `*` and `?` within one component,
 * `[abc]` / `[!abc]` / `[a-z]` classes, `**` across components, `\` escapes. A pattern with a
 * leading '/' is anchored at the searched directory; one without matches at any depth (`*.txt`
 * finds every .txt file, `etc/hosts` every hosts file in an etc directory); one with a
 * trailing '/' matches directories only.
 */
export function compileGlob(pattern: string): (path: string, isDirectory?: boolean) => boolean {
  if (pattern === '') throw new BadRequestError('empty pattern');
  const anchored = pattern.startsWith('/');
  // a trailing '/' matches directories only (pathpatterns, gitignore)
  const directoriesOnly = pattern.length > 1 && pattern.endsWith('/');
  const body = pattern.replace(/^\/+/, '').replace(/\/+$/, '');
  let re = '';
  for (let i = 0; i < body.length; i++) {
    const ch = body[i]!;
    if (ch === '*' && body[i + 1] === '*') {
      const before = i === 0 || body[i - 1] === '/';
      const after = i + 2 === body.length || body[i + 2] === '/';
      if (before && after) {
        // '**/' matches no or any number of whole components
        if (i + 2 < body.length) {
          re += '(?:[^/]*/)*';
          i += 2;
        } else {
          re += '.*';
          i += 1;
        }
        continue;
      }
      re += '[^/]*';
      i += 1;
    } else if (ch === '*') re += '[^/]*';
    else if (ch === '?') re += '[^/]';
    else if (ch === '\\' && i + 1 < body.length) re += escapeRe(body[++i]!);
    else if (ch === '[') {
      const close = body.indexOf(']', i + 2);
      if (close < 0) {
        re += '\\[';
        continue;
      }
      let cls = body.slice(i + 1, close);
      const negate = cls.startsWith('!') || cls.startsWith('^');
      if (negate) cls = cls.slice(1);
      re += `[${negate ? '^/' : ''}${cls.replace(/[\\\]]/g, '\\$&')}]`;
      i = close;
    } else re += escapeRe(ch);
  }
  const regex = new RegExp(`^/${anchored ? '' : '(?:[^/]+/)*'}${re}$`, 's');
  return (path: string, isDirectory = false) =>
    (isDirectory || !directoriesOnly) && regex.test(path.startsWith('/') ? path : `/${path}`);
}

function escapeRe(ch: string): string {
  return /[.*+?^${}()|[\]\\/]/.test(ch) ? `\\${ch}` : ch;
}

export interface GlobMatch<E> {
  /** '/'-separated path below the searched directory, with a leading '/'. */
  path: string;
  entry: E;
}

/**
 * Every entry below `dir` whose path matches `pattern`, depth first in the order `children`
 * gives; directories are searched whether they match or not.
 */
export async function* findByGlob<E>(
  dir: E,
  pattern: string,
  tree: {
    children: (dir: E) => Promise<E[]> | AsyncIterable<E>;
    name: (entry: E) => Buffer;
    isDirectory: (entry: E) => boolean;
  },
): AsyncGenerator<GlobMatch<E>> {
  const matches = compileGlob(pattern);
  async function* walk(d: E, prefix: string): AsyncGenerator<GlobMatch<E>> {
    const children = await tree.children(d);
    for await (const e of children) {
      const path = `${prefix}/${tree.name(e).toString('utf8')}`;
      if (matches(path, tree.isDirectory(e))) yield { path, entry: e };
      if (tree.isDirectory(e)) yield* walk(e, path);
    }
  }
  yield* walk(dir, '');
}
