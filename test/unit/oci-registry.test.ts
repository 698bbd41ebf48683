import t from 'tap';
import { parse } from 'yaml';
import { main } from '../../lab/images/cli.js';
import { registryImageRef } from '../../lab/images/push.js';
import { defaultRegistryOptions, probeAddress, renderRegistryConfig, splitListen } from '../../lab/images/registry.js';
import { registry } from '../../lab/paths.js';

interface RegistryConfig {
  version: number;
  storage: { filesystem: { rootdirectory: string }; delete: { enabled: boolean } };
  http: { addr: string };
  auth?: { htpasswd: { realm: string; path: string } };
}

t.test('registry config', async (t) => {
  const plain = parse(renderRegistryConfig({ name: 'plain', listen: '127.0.0.1:5000', storageDir: '/var/lib/x' })) as RegistryConfig;
  t.equal(plain.version, 0.1);
  t.equal(plain.http.addr, '127.0.0.1:5000');
  t.equal(plain.storage.filesystem.rootdirectory, '/var/lib/x');
  t.equal(plain.storage.delete.enabled, true);
  t.equal(plain.auth, undefined, 'no auth section without htpasswd');
  const auth = parse(renderRegistryConfig({ name: 'auth', listen: '0.0.0.0:5001', storageDir: '/s', htpasswdPath: '/run/h' })) as RegistryConfig;
  t.same(auth.auth, { htpasswd: { realm: 'knode-auth', path: '/run/h' } });
  t.equal(
    renderRegistryConfig({ name: 'a', listen: '127.0.0.1:1', storageDir: '/s' }),
    renderRegistryConfig({ name: 'a', listen: '127.0.0.1:1', storageDir: '/s' }),
    'deterministic',
  );
  t.throws(() => renderRegistryConfig({ name: 'a', listen: '127.0.0.1', storageDir: '/s' }), { code: 'REGISTRY_BAD_LISTEN' });
});

t.test('listen addresses', async (t) => {
  t.same(splitListen('127.0.0.1:5000'), { host: '127.0.0.1', port: 5000 });
  t.same(splitListen(':5000'), { host: '', port: 5000 });
  t.same(splitListen('[::1]:5000'), { host: '[::1]', port: 5000 });
  t.throws(() => splitListen('127.0.0.1:70000'), { code: 'REGISTRY_BAD_LISTEN' });
  t.equal(probeAddress('0.0.0.0:5000'), '127.0.0.1:5000');
  t.equal(probeAddress(':5000'), '127.0.0.1:5000');
  t.equal(probeAddress('172.31.0.1:5000'), '172.31.0.1:5000');
});

t.test('defaults and image refs in registries', async (t) => {
  t.same(defaultRegistryOptions('plain'), { name: 'plain', listen: '127.0.0.1:5000', storageDir: registry.storageDir });
  const auth = defaultRegistryOptions('auth');
  t.equal(auth.listen, '127.0.0.1:5001');
  t.same(auth.auth, { user: registry.auth.user, password: registry.auth.password });
  t.equal(auth.storageDir, registry.storageDir, 'both registries share one storage');
  t.equal(registryImageRef('127.0.0.1:5000', 'app'), '127.0.0.1:5000/knode/app:1.0');
  t.equal(registryImageRef('172.31.0.1:5001', 'pause'), '172.31.0.1:5001/knode/pause:3.9');
});

t.test('cli usage errors', async (t) => {
  const lines: string[] = [];
  const out = (l: string): void => {
    lines.push(l);
  };
  t.equal(await main([], out, out), 2);
  t.equal(await main(['images', 'frobnicate'], out, out), 2);
  t.equal(await main(['registry', 'sideways'], out, out), 2);
  t.equal(await main(['registry', 'up', '--registry', 'nope'], out, out), 2);
  t.equal(await main(['images', 'push', '--bogus'], out, out), 2);
  t.match(lines.join('\n'), /usage:/);
  t.match(lines.join('\n'), /--registry must be plain, auth or all, not nope/);
});
