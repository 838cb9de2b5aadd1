import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  formatSectionConfig,
  parseSectionConfig,
  sectionLine,
  sectionProp,
  setSectionProp,
  type Section,
} from '../../src/config/section-config.js';

// A datastore.cfg as PBS 3.2 writes it: keys in the order the operator set them, not sorted.
const REALISTIC = [
  'datastore: store1',
  '\tcomment main pool, 12 disks',
  '\tpath /mnt/datastore/store1',
  '\tgc-schedule daily',
  '\tmaintenance-mode read-only,message=disk swap',
  '',
  'datastore: offsite_2',
  '\tverify-new true',
  '\tpath /srv/pbs/offsite 2',
  '\tnotify-user root@pam',
  '\ttuning chunk-order=none,sync-level=filesystem',
  '\tnotification-mode notification-system',
  '',
  'datastore: tiny',
  '\tpath /tmp/tiny',
  '',
].join('\n');

test('a realistic datastore.cfg round-trips byte for byte, keys in their odd order', () => {
  const sections = parseSectionConfig(REALISTIC, 'datastore.cfg');
  assert.deepEqual(
    sections.map((s) => `${s.type}: ${s.id}`),
    ['datastore: store1', 'datastore: offsite_2', 'datastore: tiny'],
  );
  assert.deepEqual(
    sections[1]!.props.map(([k]) => k),
    ['verify-new', 'path', 'notify-user', 'tuning', 'notification-mode'],
  );
  assert.equal(sectionProp(sections[0]!, 'maintenance-mode'), 'read-only,message=disk swap');
  assert.equal(sectionProp(sections[1]!, 'path'), '/srv/pbs/offsite 2');
  assert.equal(formatSectionConfig(sections), REALISTIC);
});

test('comment lines are dropped wherever they stand, and the rest parses as without them', () => {
  const commented = [
    '# written by hand',
    'datastore: store1',
    '\t# the big one',
    '\tcomment main pool, 12 disks',
    '\tpath /mnt/datastore/store1',
    '# between properties, still in store1',
    '\tgc-schedule daily',
    '\tmaintenance-mode read-only,message=disk swap',
    '',
    '# about offsite',
    'datastore: offsite_2',
    '\tverify-new true',
    '\tpath /srv/pbs/offsite 2',
    '\tnotify-user root@pam',
    '\ttuning chunk-order=none,sync-level=filesystem',
    '\tnotification-mode notification-system',
    '',
    'datastore: tiny',
    '\tpath /tmp/tiny',
    '# trailing',
    '',
  ].join('\n');
  const sections = parseSectionConfig(commented);
  assert.deepEqual(sections, parseSectionConfig(REALISTIC));
  assert.equal(formatSectionConfig(sections), REALISTIC);
});

test('a value that starts with # is a value, not a comment', () => {
  const [s] = parseSectionConfig('datastore: a\n\tcomment #1 pool\n');
  assert.equal(sectionProp(s!, 'comment'), '#1 pool');
});

test('CRLF line ends, extra blank lines and a header without a blank after the colon are read', () => {
  const text = '\r\n\r\ndatastore:store1\r\n\tpath /a\r\n\r\n\r\ndatastore: b2b\r\n  path   /b  \r\n';
  const sections = parseSectionConfig(text);
  assert.deepEqual(sections, [
    { type: 'datastore', id: 'store1', props: [['path', '/a']] },
    { type: 'datastore', id: 'b2b', props: [['path', '/b']] },
  ]);
  assert.equal(formatSectionConfig(sections), 'datastore: store1\n\tpath /a\n\ndatastore: b2b\n\tpath /b\n');
});

test('an empty file has no sections and formats back to nothing', () => {
  assert.deepEqual(parseSectionConfig(''), []);
  assert.deepEqual(parseSectionConfig('\n\n# only a comment\n'), []);
  assert.equal(formatSectionConfig([]), '');
});

test('malformed files are refused with a BadConfigError naming the file and the line', () => {
  const cases: Array<[string, RegExp]> = [
    [
      'datastore: a\n\tpath /a\n\nthis is not a header\n',
      /^datastore\.cfg line 4: cannot parse 'this is not a header'$/,
    ],
    ['\tpath /a\n', /^datastore\.cfg line 1: property outside of a section$/],
    ['datastore: a\n\tpath /a\n\n\tpath /b\n', /^datastore\.cfg line 4: property outside of a section$/],
    [
      'datastore: a\n\tpath /a\n\ndatastore: a\n\tpath /b\n',
      /^datastore\.cfg line 4: duplicate section 'datastore: a'$/,
    ],
    [
      'datastore: a\n\tpath /a\n\tcomment x\n\tpath /b\n',
      /^datastore\.cfg line 4: duplicate property 'path' in section 'a'$/,
    ],
    ['datastore: a\n\t9path /a\n', /^datastore\.cfg line 2: cannot parse/],
    ['datastore: two words\n', /^datastore\.cfg line 1: cannot parse/],
  ];
  for (const [text, message] of cases) {
    assert.throws(() => parseSectionConfig(text, 'datastore.cfg'), { code: 'BAD_CONFIG', message }, text);
  }
});

test('sectionLine tells where a parsed header and each property were read', () => {
  const sections = parseSectionConfig('# c\ndatastore: a\n\tpath /a\n\n\ndatastore: b\n\t# c\n\tpath /b\n');
  assert.equal(sectionLine(sections[0]!), 2);
  assert.equal(sectionLine(sections[0]!, 'path'), 3);
  assert.equal(sectionLine(sections[1]!), 6);
  assert.equal(sectionLine(sections[1]!, 'path'), 8);
  assert.equal(sectionLine(sections[1]!, 'comment'), undefined);
  assert.equal(sectionLine({ type: 'datastore', id: 'x', props: [] }), undefined);
});

test('a newline or other control character inside a value is refused on format, never written', () => {
  const section = (value: string): Section => ({ type: 'datastore', id: 'a', props: [['comment', value]] });
  assert.throws(() => formatSectionConfig([section('two\nlines')]), {
    code: 'BAD_CONFIG',
    message: "property 'comment' of 'a' contains a newline",
  });
  assert.throws(() => formatSectionConfig([section('carriage\rreturn')]), { code: 'BAD_CONFIG' });
  assert.throws(() => formatSectionConfig([section('tab\there')]), { message: /control character/ });
});

test('format refuses what would read back differently instead of silently changing it', () => {
  const base: Section = { type: 'datastore', id: 'a', props: [['path', '/a']] };
  const bad: Section[][] = [
    [{ ...base, props: [['comment', ' padded ']] }],
    [{ ...base, id: 'two words' }],
    [{ ...base, type: 'Data Store' }],
    [{ ...base, props: [['bad key', 'x']] }],
    [
      {
        ...base,
        props: [
          ['path', '/a'],
          ['path', '/b'],
        ],
      },
    ],
    [base, { ...base }],
  ];
  for (const sections of bad) {
    assert.throws(() => formatSectionConfig(sections), { code: 'BAD_CONFIG' }, JSON.stringify(sections));
  }
});

test('a property with an empty value is written without a trailing blank and reads back empty', () => {
  const text = formatSectionConfig([{ type: 'datastore', id: 'a', props: [['comment', '']] }]);
  assert.equal(text, 'datastore: a\n\tcomment\n');
  assert.deepEqual(parseSectionConfig(text)[0]!.props, [['comment', '']]);
});

test('setSectionProp replaces in place, appends new keys last and removes with undefined', () => {
  const [s] = parseSectionConfig('datastore: a\n\tcomment x\n\tpath /a\n\tgc-schedule daily\n');
  setSectionProp(s!, 'comment', 'y');
  setSectionProp(s!, 'verify-new', 'true');
  setSectionProp(s!, 'gc-schedule', undefined);
  setSectionProp(s!, 'tuning', undefined);
  assert.equal(formatSectionConfig([s!]), 'datastore: a\n\tcomment y\n\tpath /a\n\tverify-new true\n');
});
