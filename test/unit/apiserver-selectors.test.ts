import t from 'tap';
import { matchesFields, matchesLabels, parseFieldSelector, parseLabelSelector } from '../../lab/apiserver/selectors.js';

t.test('label selector operators', async (t) => {
  const labels = { app: 'web', tier: 'front', n: '5' };
  const cases: [string, boolean][] = [
    ['', true],
    ['app=web', true],
    ['app==web', true],
    ['app!=web', false],
    ['app!=db', true],
    ['missing!=x', true],
    ['app in (web,db)', true],
    ['app in (db)', false],
    ['app notin (db, cache)', true],
    ['app notin (web)', false],
    ['missing notin (web)', true],
    ['tier', true],
    ['missing', false],
    ['!missing', true],
    ['!tier', false],
    ['app=web,tier=front', true],
    ['app=web,tier=back', false],
    ['app in (web,db),!missing,tier', true],
    ['n>4', true],
    ['n<5', false],
    ['example.com/role=x', false],
  ];
  for (const [sel, want] of cases) t.equal(matchesLabels(parseLabelSelector(sel), labels), want, sel);
});

t.test('invalid label selectors are BadRequest', async (t) => {
  for (const sel of ['app=', 'app in web', '=x', 'a b', 'app=web,', 'Bad_Key-=x/y']) {
    if (sel === 'app=') {
      // An empty value is valid upstream: app= matches app with an empty value.
      t.same(parseLabelSelector(sel), [{ key: 'app', op: '=', values: [''] }]);
      continue;
    }
    t.throws(() => parseLabelSelector(sel), { code: 'API_BadRequest' }, sel);
  }
});

t.test('field selectors', async (t) => {
  const fields = { 'metadata.name': 'a,b', 'spec.nodeName': 'node-1', 'status.phase': 'Running' };
  t.ok(matchesFields(parseFieldSelector('spec.nodeName=node-1'), fields));
  t.ok(matchesFields(parseFieldSelector('spec.nodeName==node-1,status.phase!=Failed'), fields));
  t.notOk(matchesFields(parseFieldSelector('spec.nodeName!=node-1'), fields));
  t.ok(matchesFields(parseFieldSelector('metadata.name=a\\,b'), fields), 'escaped comma');
  t.ok(matchesFields(parseFieldSelector('spec.nodeName='), { 'spec.nodeName': '' }), 'empty value matches unset');
  t.throws(() => parseFieldSelector('nonsense'), { code: 'API_BadRequest' });
});
