import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  formatPropertyString,
  parsePropertyString,
  quotePropertyValue,
  type PropertyEntries,
} from '../../src/config/property-string.js';

// maintenance-mode's schema: properties `type` and `message`, default key `type` (reference §1.4)
const MM = { defaultKey: 'type', name: 'maintenance-mode' } as const;
const parse = (text: string) => parsePropertyString(text, MM);

test('all four spellings PBS accepts for an offline mode parse to the same entries', () => {
  assert.deepEqual(parse('offline'), [['type', 'offline']]);
  assert.deepEqual(parse('type=offline'), [['type', 'offline']]);
  const withMessage: PropertyEntries = [
    ['type', 'offline'],
    ['message', 'x'],
  ];
  assert.deepEqual(parse('type=offline,message="x"'), withMessage);
  assert.deepEqual(parse('offline,message=x'), withMessage);
  assert.deepEqual(parse('"offline",message=x'), withMessage);
});

test('strings as PBS 3.2+ writes them into datastore.cfg parse, spaces unquoted included', () => {
  // the serializer omits the default key and quotes only for ", \ and newline (reference §1.4)
  assert.deepEqual(parse('read-only,message=disk swap'), [
    ['type', 'read-only'],
    ['message', 'disk swap'],
  ]);
  assert.deepEqual(parse('offline,message="moving to \\"rack 2\\""'), [
    ['type', 'offline'],
    ['message', 'moving to "rack 2"'],
  ]);
  assert.deepEqual(parse('read-only,message=a=b'), [
    ['type', 'read-only'],
    ['message', 'a=b'],
  ]);
  // before 3.2.0 the raw API string was stored; PBS only treats a leading quote as quoting
  assert.deepEqual(parse('type=offline,message=say "hi"'), [
    ['type', 'offline'],
    ['message', 'say "hi"'],
  ]);
});

test('quoted values understand exactly the escapes \\", \\\\ and \\n', () => {
  assert.deepEqual(parse('offline,message="a\\"b\\\\c\\nd"'), [
    ['type', 'offline'],
    ['message', 'a"b\\c\nd'],
  ]);
  assert.throws(() => parse('offline,message="a\\tb"'), {
    code: 'BAD_REQUEST',
    message: /maintenance-mode: invalid escape '\\t'/,
  });
  assert.throws(() => parse('offline,message="ends in \\'), { code: 'BAD_REQUEST' });
});

test('a message with commas, quotes, equals signs and backslashes survives format then parse exactly', () => {
  const message = 'disk 3, "sdc" = dead; path C:\\x\nnext line, again';
  const entries: PropertyEntries = [
    ['type', 'read-only'],
    ['message', message],
  ];
  const text = formatPropertyString(entries, { ...MM, alwaysQuote: ['message'] });
  assert.equal(text, 'read-only,message="disk 3, \\"sdc\\" = dead; path C:\\\\x\\nnext line, again"');
  assert.deepEqual(parse(text), entries);
});

test('the default key is written first and bare, other keys with their names', () => {
  const text = formatPropertyString(
    [
      ['message', 'm'],
      ['type', 'offline'],
    ],
    MM,
  );
  assert.equal(text, 'offline,message=m');
});

test('values that would not re-parse unquoted are quoted even without alwaysQuote', () => {
  for (const value of ['a,b', 'a=b', '', 'two words', '"lead', 'back\\slash']) {
    const text = formatPropertyString([['message', value]], { name: 'x' });
    assert.deepEqual(parsePropertyString(text), [['message', value]], `value ${JSON.stringify(value)}`);
  }
  // a default-key value containing '=' would otherwise be read back as a key
  const text = formatPropertyString([['type', 'a=b']], MM);
  assert.equal(text, '"a=b"');
  assert.deepEqual(parse(text), [['type', 'a=b']]);
});

test('malformed strings are refused with a 400 naming the property string', () => {
  const bad: Array<[string, RegExp]> = [
    ['offline,message="never closed', /unbalanced quote/],
    ['offline,', /trailing comma/],
    ['offline,,message=x', /empty item/],
    ['offline,message=a,message=b', /duplicate key 'message'/],
    ['type=offline,read-only', /duplicate key 'type'/],
    ['offline,read-only', /duplicate key 'type'/],
    ['offline,message="x"y', /unexpected data after quoted value/],
    ['offline,mess age=x', /invalid key 'mess age'/],
    ['offline,a"b=c', /invalid key 'a"b'/],
  ];
  for (const [text, message] of bad) {
    assert.throws(
      () => parse(text),
      (err: unknown) => {
        assert.equal((err as { code?: string }).code, 'BAD_REQUEST', text);
        assert.equal((err as { status?: number }).status, 400);
        assert.match((err as Error).message, /^maintenance-mode: /, text);
        assert.match((err as Error).message, message, text);
        return true;
      },
    );
  }
});

test('a bare value is refused when the schema has no default key', () => {
  assert.throws(() => parsePropertyString('offline', { name: 'tuning' }), {
    code: 'BAD_REQUEST',
    message: "tuning: value 'offline' has no key",
  });
});

test('an empty string has no entries', () => {
  assert.deepEqual(parse(''), []);
});

test('formatting refuses a key that could not be parsed back', () => {
  assert.throws(() => formatPropertyString([['a=b', 'x']], MM), { code: 'BAD_REQUEST' });
  assert.throws(() => formatPropertyString([['a,b', 'x']], MM), { code: 'BAD_REQUEST' });
});

test('quotePropertyValue escapes backslash before quote so the result round-trips', () => {
  assert.equal(quotePropertyValue('\\"'), '"\\\\\\""');
  assert.deepEqual(parsePropertyString('k=' + quotePropertyValue('\\"')), [['k', '\\"']]);
});
