/** Volumes: host paths, the atomic writer's ..data layout, configMap/secret/downwardAPI payloads, hostPath types (temp dir). */
import t from 'tap';
import { lstat, mkdir, mkdtemp, readdir, readFile, readlink, rm, stat, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { V1Pod, V1Volume } from '@kubernetes/client-node';
import { writeAtomic } from '../../agent/pods/atomic-writer.js';
import type { ObjectLookup } from '../../agent/pods/types.js';
import { checkHostPath, configMapPayload, containerMounts, downwardAPIPayload, secretPayload, setUpVolumes, tearDownVolumes, volumeHostPath } from '../../agent/pods/volumes.js';

const dir = await mkdtemp(join(tmpdir(), 'knode-agent-volumes-'));
t.teardown(() => rm(dir, { recursive: true, force: true }));

t.test('host paths as the kubelet lays them out', async (t) => {
  t.equal(volumeHostPath('/var/lib/kubelet', 'u1', { name: 'cache', emptyDir: {} }), '/var/lib/kubelet/pods/u1/volumes/kubernetes.io~empty-dir/cache');
  t.equal(volumeHostPath('/r', 'u1', { name: 'cfg', configMap: { name: 'x' } }), '/r/pods/u1/volumes/kubernetes.io~configmap/cfg');
  t.equal(volumeHostPath('/r', 'u1', { name: 's', secret: { secretName: 'x' } }), '/r/pods/u1/volumes/kubernetes.io~secret/s');
  t.equal(volumeHostPath('/r', 'u1', { name: 'd', downwardAPI: {} }), '/r/pods/u1/volumes/kubernetes.io~downward-api/d');
  t.equal(volumeHostPath('/r', 'u1', { name: 'h', hostPath: { path: '/etc/x' } }), '/etc/x');
});

t.test('atomic writer: ..data layout, update swaps, stale names go', async (t) => {
  const vol = join(dir, 'atomic');
  const payload = new Map([
    ['a.txt', { data: Buffer.from('one'), mode: 0o644 }],
    ['sub/b.txt', { data: Buffer.from('two'), mode: 0o600 }],
  ]);
  t.equal(await writeAtomic(vol, payload), true);
  const data = await readlink(join(vol, '..data'));
  t.match(data, /^\.\.\d{4}_\d\d_\d\d_\d\d_\d\d_\d\d\.\d+$/, `..data -> ${data}`);
  t.equal(await readlink(join(vol, 'a.txt')), '..data/a.txt');
  t.equal(await readlink(join(vol, 'sub')), '..data/sub');
  t.equal(await readFile(join(vol, 'sub/b.txt'), 'utf8'), 'two');
  t.equal((await stat(join(vol, 'sub/b.txt'))).mode & 0o777, 0o600);
  t.equal(await writeAtomic(vol, payload), false, 'same payload: nothing written');

  t.equal(await writeAtomic(vol, new Map([['c.txt', { data: Buffer.from('three'), mode: 0o644 }]])), true);
  const entries = (await readdir(vol)).sort();
  t.equal(entries.length, 3, `${entries.join(' ')}`);
  t.ok(entries.includes('..data') && entries.includes('c.txt'));
  t.not(await readlink(join(vol, '..data')), data, 'new timestamp dir');
  t.notOk(entries.includes(data), 'old timestamp dir removed');
  await t.rejects(writeAtomic(vol, new Map([['../escape', { data: Buffer.from(''), mode: 0o644 }]])), { code: 'INVALID_VOLUME_PATH' });
  await t.rejects(writeAtomic(vol, new Map([['..data/x', { data: Buffer.from(''), mode: 0o644 }]])), { code: 'INVALID_VOLUME_PATH' });
});

t.test('configMap and secret payloads: keys, items, modes, optional', async (t) => {
  const cmv: V1Volume = { name: 'cfg', configMap: { name: 'app', defaultMode: 0o440 } };
  const cm = { data: { 'app.conf': 'x=1', other: 'y' }, binaryData: { 'bin.dat': Buffer.from([0, 1, 2]).toString('base64') } };
  const all = configMapPayload(cmv, cm);
  t.same([...all.keys()].sort(), ['app.conf', 'bin.dat', 'other']);
  t.equal(all.get('app.conf')!.mode, 0o440);
  t.same([...all.get('bin.dat')!.data], [0, 1, 2]);
  const items = configMapPayload({ name: 'cfg', configMap: { name: 'app', items: [{ key: 'app.conf', path: 'conf/app.conf', mode: 0o400 }] } }, cm);
  t.same([...items.entries()].map(([k, v]) => [k, v.data.toString(), v.mode]), [['conf/app.conf', 'x=1', 0o400]]);
  t.throws(() => configMapPayload({ name: 'cfg', configMap: { name: 'app', items: [{ key: 'nope', path: 'p' }] } }, cm), { code: 'VOLUME_SETUP', message: 'MountVolume.SetUp failed for volume "cfg" : configmap references non-existent config key: nope' });
  t.throws(() => configMapPayload({ name: 'cfg', configMap: { name: 'missing' } }, undefined), { message: 'MountVolume.SetUp failed for volume "cfg" : configmap "missing" not found' });
  t.equal(configMapPayload({ name: 'cfg', configMap: { name: 'missing', optional: true } }, undefined).size, 0);
  const sec = secretPayload({ name: 's', secret: { secretName: 'creds' } }, { data: { password: Buffer.from('pw').toString('base64') } });
  t.equal(sec.get('password')!.data.toString(), 'pw', 'secret data is decoded');
  t.equal(sec.get('password')!.mode, 0o644);
});

t.test('downwardAPI payload', async (t) => {
  const pod: V1Pod = {
    metadata: { name: 'web', namespace: 'ns', uid: 'u', labels: { b: '2', a: '1' }, annotations: { note: 'hi "there"' } },
    spec: { containers: [{ name: 'app', resources: { limits: { memory: '64Mi' } } }] },
  };
  const p = downwardAPIPayload(
    pod,
    {
      name: 'info',
      downwardAPI: {
        items: [
          { path: 'name', fieldRef: { fieldPath: 'metadata.name' } },
          { path: 'labels', fieldRef: { fieldPath: 'metadata.labels' } },
          { path: 'annotations', fieldRef: { fieldPath: 'metadata.annotations' } },
          { path: 'mem', resourceFieldRef: { containerName: 'app', resource: 'limits.memory', divisor: '1Mi' }, mode: 0o400 },
        ],
      },
    },
    { hostIPs: [], podIPs: [], nodeAllocatable: { cpu: '1', memory: '1Gi' } },
  );
  t.equal(p.get('name')!.data.toString(), 'web');
  t.equal(p.get('labels')!.data.toString(), 'a="1"\nb="2"');
  t.equal(p.get('annotations')!.data.toString(), 'note="hi \\"there\\""');
  t.equal(p.get('mem')!.data.toString(), '64');
  t.equal(p.get('mem')!.mode, 0o400);
});

t.test('hostPath type checks', async (t) => {
  const base = join(dir, 'hostpath');
  await mkdir(base);
  await writeFile(join(base, 'file'), 'x');
  await checkHostPath(join(base, 'new/deep'), 'DirectoryOrCreate');
  t.ok((await stat(join(base, 'new/deep'))).isDirectory(), 'DirectoryOrCreate creates');
  await checkHostPath(base, 'Directory');
  await t.rejects(checkHostPath(join(base, 'file'), 'Directory'), { code: 'HOSTPATH_TYPE', message: `hostPath type check failed: ${join(base, 'file')} is not a directory` });
  await t.rejects(checkHostPath(join(base, 'absent'), 'Directory'), { code: 'HOSTPATH_TYPE' });
  await checkHostPath(join(base, 'made'), 'FileOrCreate');
  t.ok((await stat(join(base, 'made'))).isFile(), 'FileOrCreate creates an empty file');
  await t.rejects(checkHostPath(join(base, 'no/parent'), 'FileOrCreate'), { code: 'HOSTPATH_TYPE' }, 'FileOrCreate does not create the parent');
  await checkHostPath(join(base, 'file'), 'File');
  await t.rejects(checkHostPath(base, 'File'), { message: `hostPath type check failed: ${base} is not a file` });
  await t.rejects(checkHostPath(join(base, 'file'), 'Socket'), { message: /is not a socket file$/ });
  const sock = join(base, 'sock');
  const server = createServer().listen(sock);
  await new Promise((r) => server.once('listening', r));
  await checkHostPath(sock, 'Socket');
  server.close();
  await t.rejects(checkHostPath(join(base, 'file'), 'CharDevice'), { message: /is not a character device$/ });
  await checkHostPath('/dev/null', 'CharDevice');
  await checkHostPath(join(base, 'anything'), undefined);
  t.pass('no type: no check');
});

t.test('setUpVolumes + containerMounts + tearDown', async (t) => {
  const rootDir = join(dir, 'root');
  const lookup: ObjectLookup = {
    getConfigMap: async (_ns, name) => (name === 'app' ? { data: { 'index.html': 'hello' } } : undefined),
    getSecret: async () => undefined,
    listServices: async () => [],
  };
  const pod: V1Pod = {
    metadata: { name: 'web', namespace: 'ns', uid: 'uid-vol' },
    spec: {
      containers: [{ name: 'app', volumeMounts: [{ name: 'cfg', mountPath: '/www', readOnly: true }, { name: 'scratch', mountPath: '/tmp/s', subPath: 'one/two' }] }],
      volumes: [
        { name: 'cfg', configMap: { name: 'app' } },
        { name: 'scratch', emptyDir: {} },
        { name: 'host', hostPath: { path: join(dir, 'hp-dir'), type: 'DirectoryOrCreate' } },
      ],
    },
  };
  const paths = await setUpVolumes(pod, { rootDir, lookup, hostIPs: [], podIPs: [], nodeAllocatable: { cpu: '1', memory: '1Gi' } });
  t.equal(await readFile(join(paths.get('cfg')!, 'index.html'), 'utf8'), 'hello');
  t.ok((await lstat(paths.get('scratch')!)).isDirectory());
  t.ok((await lstat(join(dir, 'hp-dir'))).isDirectory());
  const mounts = await containerMounts(pod.spec!.containers[0]!, paths);
  t.same(mounts, [
    { containerPath: '/www', hostPath: paths.get('cfg')!, readonly: true },
    { containerPath: '/tmp/s', hostPath: join(paths.get('scratch')!, 'one/two'), readonly: false },
  ]);
  t.ok((await lstat(join(paths.get('scratch')!, 'one/two'))).isDirectory(), 'subPath created');
  await t.rejects(containerMounts({ name: 'x', volumeMounts: [{ name: 'nope', mountPath: '/n' }] }, paths), { code: 'CREATE_CONTAINER_CONFIG' });
  const missing: V1Pod = { ...pod, spec: { ...pod.spec!, volumes: [{ name: 'cfg', configMap: { name: 'gone' } }] } };
  await t.rejects(setUpVolumes(missing, { rootDir, lookup, hostIPs: [], podIPs: [], nodeAllocatable: { cpu: '1', memory: '1Gi' } }), { code: 'VOLUME_SETUP' });
  await tearDownVolumes(pod, { rootDir });
  await t.rejects(lstat(join(rootDir, 'pods', 'uid-vol')), { code: 'ENOENT' }, 'pod dir removed');
  t.ok((await lstat(join(dir, 'hp-dir'))).isDirectory(), 'hostPath left alone');
});
