// Many knode-bridge ADDs and DELs as separate processes at the same time, one container netns
// each, all in one throw-away "host" netns: no IP handed out twice, nothing left behind.
// KNODE_CNI_STRESS_N (default 200) containers; KNODE_CNI_STRESS_INFLIGHT (default 50) processes
// at a time, so that 2 cores and memory are not swamped by 200 simultaneous Node start-ups.
import t from 'tap';
import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execFile } from '../../lib/exec.js';
import { buildPlugins, createNetns, deleteNetns, inNetns, randomName, runPlugin } from '../../cni/testing/harness.js';
import type { Netns, PluginOutcome } from '../../cni/testing/harness.js';

if (process.getuid?.() !== 0) {
  t.plan(0, 'needs root');
  process.exit(0);
}

const N = Number(process.env.KNODE_CNI_STRESS_N ?? 200);
const INFLIGHT = Number(process.env.KNODE_CNI_STRESS_INFLIGHT ?? 50);

await buildPlugins();

async function pool<T>(count: number, limit: number, fn: (i: number) => Promise<T>): Promise<T[]> {
  const out = new Array<T>(count);
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < count) {
      const i = next++;
      out[i] = await fn(i);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, count) }, worker));
  return out;
}

function percentile(values: number[], p: number): number {
  const s = [...values].sort((a, b) => a - b);
  return Math.round(s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))] ?? 0);
}

t.test(`${N} concurrent ADDs then DELs`, async (t) => {
  const host = await createNetns();
  const dataDir = mkdtempSync(join(tmpdir(), 'knode-t-ipam-'));
  const prefix = randomName('knode-t-') + '-';
  const names = Array.from({ length: N }, (_, i) => `${prefix}${i}`);
  const containers: Netns[] = names.map((name) => ({ name, path: `/run/netns/${name}` }));
  t.teardown(async () => {
    const batch = containers.map((c) => `netns del ${c.name}`).join('\n') + '\n';
    await execFile('ip', ['-force', '-batch', '-'], { input: batch, allowFailure: true });
    await deleteNetns(host);
    rmSync(dataDir, { recursive: true, force: true });
  });
  await execFile('ip', ['-batch', '-'], { input: containers.map((c) => `netns add ${c.name}`).join('\n') + '\n' });

  const conf = {
    cniVersion: '1.0.0',
    name: 'knode-t-stress',
    type: 'knode-bridge',
    bridge: 'kbr0',
    isGateway: true,
    ipam: { type: 'knode-host-local', dataDir, ranges: [[{ subnet: '10.90.0.0/16' }]] },
  };
  const run = (command: string, i: number): Promise<PluginOutcome> =>
    runPlugin({ plugin: 'knode-bridge', command, host, containerId: `stress${i}`, netns: containers[i]!.path, ifName: 'eth0', config: conf });

  const started = Date.now();
  const adds = await pool(N, INFLIGHT, (i) => run('ADD', i));
  const addWall = Date.now() - started;
  const failedAdds = adds.filter((r) => r.code !== 0);
  t.equal(failedAdds.length, 0, `all ADDs succeed ${failedAdds[0]?.stdout ?? ''}`);
  const ips = adds.map((r) => ((r.json?.ips as { address: string }[] | undefined) ?? [])[0]?.address);
  t.equal(new Set(ips).size, N, 'no IP handed out twice');
  const dir = join(dataDir, 'knode-t-stress');
  t.equal(readdirSync(dir).filter((n) => n.startsWith('10.')).length, N, 'one IP file per container');
  const veths = await inNetns(host, 'ip', ['-o', 'link', 'show', 'type', 'veth'], false);
  t.equal(veths.stdout.trim().split('\n').length, N, 'one host veth per container');
  const ping = await inNetns(containers[0]!, 'ping', ['-c', '1', '-W', '3', ips[N - 1]!.split('/')[0]!]);
  t.equal(ping.code, 0, 'first container reaches the last one');

  const delStarted = Date.now();
  const dels = await pool(N, INFLIGHT, (i) => run('DEL', i));
  const delWall = Date.now() - delStarted;
  t.equal(dels.filter((r) => r.code !== 0).length, 0, 'all DELs succeed');
  t.same(existsSync(dir) ? readdirSync(dir).filter((n) => n.startsWith('10.')) : [], [], 'zero leaked IP files');
  const left = await inNetns(host, 'ip', ['-o', 'link', 'show', 'type', 'veth'], false);
  t.equal(left.stdout.trim(), '', 'zero leaked veths');
  t.comment(
    `N=${N} inflight=${INFLIGHT}: ADD wall ${addWall} ms (per call p50 ${percentile(adds.map((r) => r.ms), 50)} ms, p99 ${percentile(adds.map((r) => r.ms), 99)} ms); ` +
      `DEL wall ${delWall} ms (p50 ${percentile(dels.map((r) => r.ms), 50)} ms)`,
  );
});
