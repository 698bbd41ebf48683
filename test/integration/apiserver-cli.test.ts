/**
 * `knode-lab apiserver` entry point: flags, start, kubeconfigs for the admin
 * and the nodes, graceful SIGTERM that flushes the persisted store.
 */
import t from 'tap';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { CoreV1Api, KubeConfig } from '@kubernetes/client-node';
import { main, parseArgs } from '../../lab/apiserver/cli.js';

t.test('flags', async (t) => {
  const o = parseArgs(['--data-dir', '/x', '--listen', '127.0.0.1:1', '--listen=127.0.0.2:2', '--node', 'a', '--node', 'b', '--san', '172.31.0.1', '--advertise', '172.31.0.1:6443', '--service-cidr', '10.0.0.0/24', '--persist', '/x/s.json', '--token-file', '/x/t.csv']);
  t.match(o, {
    dataDir: '/x',
    listen: ['127.0.0.1:1', '127.0.0.2:2'],
    nodes: ['a', 'b'],
    extraSANs: ['172.31.0.1'],
    advertise: { ip: '172.31.0.1', port: 6443 },
    serviceCIDR: '10.0.0.0/24',
    persistPath: '/x/s.json',
    tokenFile: '/x/t.csv',
  });
  t.throws(() => parseArgs(['--bogus']), { code: 'USAGE' });
  t.throws(() => parseArgs(['--listen']), { code: 'USAGE' });
  t.equal(parseArgs([]).serviceAccountAdmission, true, 'the ServiceAccount admission plugin is on by default');
  t.match(parseArgs(['--disable-admission-plugins', 'ServiceAccount', '--service-account-min-token-expiration', '10']), { serviceAccountAdmission: false, serviceAccountMinTokenExpirationSeconds: 10 });
  t.throws(() => parseArgs(['--disable-admission-plugins', 'NamespaceLifecycle']), { code: 'USAGE' });
  t.throws(() => parseArgs(['--service-account-min-token-expiration', '0']), { code: 'USAGE' });
  t.equal(await main(['--nope']), 2, 'usage errors exit 2');
});

t.test('runs until SIGTERM and keeps objects', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'knode-t-apiserver-cli-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const persist = join(dir, 'store.json');
  const exited = main(['--data-dir', dir, '--listen', '127.0.0.1:0', '--node', 'node-1', '--persist', persist]);
  const admin = join(dir, 'admin.kubeconfig');
  for (let i = 0; i < 100 && !existsSync(join(dir, 'nodes', 'node-1.kubeconfig')); i++) await new Promise((r) => setTimeout(r, 100));
  t.ok(existsSync(admin), 'admin kubeconfig written');
  t.ok(existsSync(join(dir, 'nodes', 'node-1.kubeconfig')), 'node kubeconfig written');
  const kc = new KubeConfig();
  kc.loadFromFile(admin);
  const core = kc.makeApiClient(CoreV1Api);
  await core.createNamespacedConfigMap({ namespace: 'default', body: { metadata: { name: 'kept' }, data: { a: 'b' } } });
  const nodeKc = new KubeConfig();
  nodeKc.loadFromFile(join(dir, 'nodes', 'node-1.kubeconfig'));
  t.equal(nodeKc.getCurrentUser()!.name, 'system:node:node-1');
  process.emit('SIGTERM');
  t.equal(await exited, 0, 'graceful exit');
  const snap = JSON.parse(await readFile(persist, 'utf8')) as { objects: { object: { metadata: { name: string } } }[] };
  t.ok(snap.objects.some((o) => o.object.metadata.name === 'kept'), 'store flushed at exit');
});
