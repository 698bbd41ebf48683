// The daemon runs many host-local requests in one process: the store's flock must exclude two
// handles of the same process (flock belongs to the open file description, not the process).
import t from 'tap';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { HostLocalStore } from '../../cni/ipam/store.js';
import { invokePlugin } from '../../cni/skel.js';
import { hostLocalPlugin } from '../../cni/ipam/host-local.js';
import { createLogger } from '../../lib/log.js';

const quiet = createLogger({ component: 'test', write: () => undefined });
const dataDir = mkdtempSync(join(tmpdir(), 'knode-daemon-lock-'));
t.teardown(() => rmSync(dataDir, { recursive: true, force: true }));

t.test('two handles in one process exclude each other', async (t) => {
  const a = new HostLocalStore(dataDir, 'locknet');
  const b = new HostLocalStore(dataDir, 'locknet');
  await a.lock();
  let bHas = false;
  const bLocked = b.lock().then(() => {
    bHas = true;
  });
  await new Promise((r) => setTimeout(r, 100));
  t.notOk(bHas, 'the second handle waits while the first holds the lock');
  a.unlock();
  await bLocked;
  t.ok(bHas, 'and gets it once the first lets go');
  b.unlock();
});

t.test('100 concurrent in-process ADDs: no duplicate IP', async (t) => {
  const conf = Buffer.from(
    JSON.stringify({ cniVersion: '1.0.0', name: 'concnet', type: 'knode-host-local', ipam: { type: 'knode-host-local', dataDir, ranges: [[{ subnet: '10.9.0.0/24' }]] } }),
  );
  const env = (id: string, cmd = 'ADD'): Record<string, string> => ({
    CNI_COMMAND: cmd,
    CNI_CONTAINERID: id,
    CNI_NETNS: '/run/netns/x',
    CNI_IFNAME: 'eth0',
    CNI_PATH: '/opt/cni/bin',
  });
  const outs = await Promise.all(Array.from({ length: 100 }, (_, i) => invokePlugin(hostLocalPlugin, env(`c${i}`), conf, quiet)));
  const ips = outs.map((o) => (JSON.parse(o.stdout) as { ips: { address: string }[] }).ips[0]!.address);
  t.equal(outs.filter((o) => o.exitCode === 0).length, 100);
  t.equal(new Set(ips).size, 100, 'all distinct');
  const dels = await Promise.all(Array.from({ length: 100 }, (_, i) => invokePlugin(hostLocalPlugin, env(`c${i}`, 'DEL'), conf, quiet)));
  t.equal(dels.filter((o) => o.exitCode === 0).length, 100);
  t.same(readdirSync(join(dataDir, 'concnet')).filter((n) => n.startsWith('10.')), [], 'no leaked IP files');
});
