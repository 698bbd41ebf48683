/** Kubelet API authorization attributes (upstream's mapping), certificate subjects, and the review cache. */
import t from 'tap';
import { bearerToken, cachingReviewer, nodeAttributes, userFromSubject, type Reviewer } from '../../agent/server/auth.js';

t.test('path → nodes subresource, method → verb', async (t) => {
  const sub = (path: string): string => nodeAttributes('GET', path, 'n1').subresource;
  t.equal(sub('/stats/summary'), 'stats');
  t.equal(sub('/stats'), 'stats');
  t.equal(sub('/metrics'), 'metrics');
  t.equal(sub('/metrics/cadvisor'), 'metrics');
  t.equal(sub('/logs/syslog'), 'log');
  t.equal(sub('/spec/'), 'spec');
  t.equal(sub('/containerLogs/ns/p/c'), 'proxy', 'container logs are nodes/proxy, as upstream');
  t.equal(sub('/exec/ns/p/c'), 'proxy');
  t.equal(sub('/pods'), 'proxy');
  t.equal(sub('/healthz'), 'proxy');
  t.equal(sub('/statsfoo'), 'proxy', 'a prefix is a whole path segment');
  t.same(nodeAttributes('POST', '/exec/ns/p/c', 'n1'), { verb: 'create', resource: 'nodes', subresource: 'proxy', name: 'n1' });
  t.equal(nodeAttributes('HEAD', '/pods', 'n1').verb, 'get');
  t.equal(nodeAttributes('PUT', '/pods', 'n1').verb, 'update');
  t.equal(nodeAttributes('PATCH', '/pods', 'n1').verb, 'patch');
  t.equal(nodeAttributes('DELETE', '/pods', 'n1').verb, 'delete');
});

t.test('certificate subject → user; bearer header', async (t) => {
  t.same(userFromSubject({ CN: 'alice', O: ['dev', 'ops'] }), { name: 'alice', groups: ['dev', 'ops', 'system:authenticated'] });
  t.same(userFromSubject({ CN: 'bob', O: 'system:masters' }), { name: 'bob', groups: ['system:masters', 'system:authenticated'] });
  t.equal(userFromSubject({ O: 'x' }), undefined);
  t.equal(userFromSubject(undefined), undefined);
  t.equal(bearerToken('Bearer abc.def'), 'abc.def');
  t.equal(bearerToken('Basic abc'), undefined);
  t.equal(bearerToken(undefined), undefined);
});

t.test('reviews are cached: allowed longer than denied; failures are not cached', async (t) => {
  let now = 0;
  const calls = { token: 0, access: 0 };
  let fail = false;
  const inner: Reviewer = {
    async reviewToken(token) {
      calls.token++;
      if (fail) throw new Error('apiserver down');
      return token === 'good' ? { name: 'u', groups: [] } : undefined;
    },
    async reviewAccess(user) {
      calls.access++;
      return { allowed: user.name === 'u', reason: '' };
    },
  };
  const r = cachingReviewer(inner, { allowedMs: 1000, deniedMs: 100 }, () => now);
  const attrs = nodeAttributes('GET', '/pods', 'n');
  t.same(await r.reviewToken('good'), { name: 'u', groups: [] });
  t.same(await r.reviewToken('good'), { name: 'u', groups: [] });
  t.equal(calls.token, 1);
  t.equal(await r.reviewToken('bad'), undefined);
  now = 50;
  t.equal(await r.reviewToken('bad'), undefined);
  t.equal(calls.token, 2, 'denial cached for 100 ms');
  now = 200;
  await r.reviewToken('bad');
  t.equal(calls.token, 3, 'denial expired');
  t.equal((await r.reviewAccess({ name: 'u', groups: ['a'] }, attrs)).allowed, true);
  t.equal((await r.reviewAccess({ name: 'u', groups: ['a'] }, attrs)).allowed, true);
  t.equal(calls.access, 1);
  t.equal((await r.reviewAccess({ name: 'u', groups: ['b'] }, attrs)).allowed, true, 'other groups: another key');
  t.equal(calls.access, 2);
  now = 2000;
  fail = true;
  await t.rejects(r.reviewToken('good'), /apiserver down/);
  fail = false;
  t.same(await r.reviewToken('good'), { name: 'u', groups: [] }, 'a failed review is asked again');
});
