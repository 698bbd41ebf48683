/**
 * knode-proxy sync time: full and partial syncs at N services (10 endpoints each) in iptables
 * and nftables modes, split into compute (render) and kernel apply, next to the floor: the time
 * `iptables-restore` / `nft -f` alone takes to load the same text into an empty namespace.
 *
 * Design notes
 * - The real backends (proxy/backends/*) run against the real kernel, in throw-away knode-t-*
 *   network namespaces (never the root namespace); their ports are wrapped only to record the
 *   text they load, so the floor loads byte-for-byte the same ruleset.
 * - Full sync: the first sync of an empty namespace. Partial sync: one endpoint of one service
 *   replaced, then synced with only that service marked changed — the common case of a pod
 *   rollout; median of --partial rounds. The floor of a partial is not measured: the partial
 *   apply already is a single small iptables-restore / nft -f call.
 * - nftables only, "nft cache fetch": the time `nft -f` takes for one `add element` line
 *   against the loaded table. nft 1.0.6 dumps every chain and set of the namespace before such
 *   a command; partial syncs avoid the commands that need it (render.ts), so this is what a
 *   partial sync would cost on top of its kernel transaction if they did not.
 * - Compute share = compute / floor(full), in wall time and in CPU time. On a shared 2-core
 *   machine the wall times swing with the load; CPU time does not: "sync CPU" is this process's
 *   own CPU (process.cpuUsage) over the whole full sync (render, plus spawning nft and piping
 *   the script: an upper bound of compute), "floor CPU" the nft / iptables-restore child's user +
 *   system time (cutime + cstime of /proc/self/stat, 10 ms ticks). RSS is this process's after the full sync: it holds
 *   the model, the tracker and the backend, as knode-proxy does (plus the bench's own objects).
 * - Each (mode, size) pair gets fresh namespaces, deleted in `finally` even on failure.
 *
 * Usage (root): scripts/bench-proxy [--sizes 1000,10000] [--modes iptables,nftables] [--partial 5]
 */
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import type { V1EndpointSlice, V1Service } from '@kubernetes/client-node';
import { execFile } from '../lib/exec.js';
import { createLogger } from '../lib/log.js';
import { ChangeTracker } from '../proxy/changes.js';
import { IptablesBackend } from '../proxy/backends/iptables/backend.js';
import { iptablesPort, type IptablesPort } from '../proxy/backends/iptables/apply.js';
import { NftablesBackend } from '../proxy/backends/nftables/backend.js';
import { nftPort, type NftPort } from '../proxy/backends/nftables/apply.js';
import type { ProxyBackend, SyncResult } from '../proxy/backends/types.js';
import { createNetns, deleteNetns, type Netns } from '../cni/testing/harness.js';

type Mode = 'iptables' | 'nftables';
const ENDPOINTS_PER_SERVICE = 10;
const quiet = createLogger({ component: 'bench', write: () => undefined });

interface Row {
  mode: Mode;
  services: number;
  full: SyncResult['duration'];
  floorMs: number;
  syncCpuMs: number;
  floorCpuMs: number;
  bytes: number;
  partial: SyncResult['duration'];
  rssMB: number;
  /** nftables: one `add element` by `nft -f` against the loaded table (nft's cache fetch). */
  fetchMs?: number;
}

function serviceObj(i: number): V1Service {
  return {
    metadata: { namespace: 'bench', name: `svc-${i}` },
    spec: { clusterIP: `10.96.${(i >> 8) & 255}.${i & 255}`, ports: [{ name: 'http', port: 80, protocol: 'TCP' }] },
  };
}

function endpointIP(i: number, j: number): string {
  const n = i * ENDPOINTS_PER_SERVICE + j;
  return `10.${100 + ((n >> 16) & 63)}.${(n >> 8) & 255}.${n & 255}`;
}

function sliceObj(i: number, generation = 0): V1EndpointSlice {
  const ips = Array.from({ length: ENDPOINTS_PER_SERVICE }, (_, j) => endpointIP(i, j));
  if (generation > 0) ips[0] = `10.99.${generation & 255}.${(i & 127) + 1}`; // one endpoint replaced
  return {
    metadata: { namespace: 'bench', name: `svc-${i}-abcde`, labels: { 'kubernetes.io/service-name': `svc-${i}` } },
    addressType: 'IPv4',
    endpoints: ips.map((ip) => ({ addresses: [ip], nodeName: 'node1', conditions: { ready: true } })),
    ports: [{ name: 'http', port: 8080, protocol: 'TCP' }],
  };
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor((s.length - 1) / 2)]!;
}

/** User + system CPU of this process's waited-for children, ms (/proc/self/stat cutime + cstime). */
function childrenCpuMs(): number {
  const stat = readFileSync('/proc/self/stat', 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  // fields[0] is field 3 (state): cutime and cstime are fields 16 and 17.
  return (Number(fields[13]) + Number(fields[14])) * 10;
}

function selfCpuMs(since: NodeJS.CpuUsage): number {
  const d = process.cpuUsage(since);
  return (d.user + d.system) / 1000;
}

async function timeMs(fn: () => Promise<unknown>): Promise<number> {
  const t0 = process.hrtime.bigint();
  await fn();
  return Number(process.hrtime.bigint() - t0) / 1e6;
}

/** A backend of `mode` in `ns` whose port records the last text it loaded. */
function recordingBackend(
  mode: Mode,
  ns: Netns,
): { backend: ProxyBackend; last: () => string; floor: (target: Netns) => Promise<number>; fetchProbe?: () => Promise<number> } {
  let last = '';
  const common = { family: 'IPv4' as const, masqueradeBit: 14, masqueradeAll: false, clusterCIDR: '10.64.0.0/10', logger: quiet };
  if (mode === 'iptables') {
    const real = iptablesPort({ family: 'IPv4', netnsPath: ns.path });
    const port: IptablesPort = { ...real, restore: (text) => ((last = text), real.restore(text)) };
    return {
      backend: new IptablesBackend({ ...common, port }),
      last: () => last,
      floor: async (target) => {
        const floorPort = iptablesPort({ family: 'IPv4', netnsPath: target.path });
        return timeMs(() => floorPort.restore(last));
      },
    };
  }
  const real = nftPort({ family: 'IPv4', netnsPath: ns.path });
  const port: NftPort = { ...real, apply: (script) => ((last = script), real.apply(script)) };
  return {
    backend: new NftablesBackend({ ...common, port }),
    last: () => last,
    floor: async (target) => {
      const floorPort = nftPort({ family: 'IPv4', netnsPath: target.path });
      return timeMs(() => floorPort.apply(last));
    },
    fetchProbe: () => timeMs(() => real.apply('add element ip kube-proxy cluster-ips { 192.0.2.1 }\n')),
  };
}

async function benchOne(mode: Mode, services: number, partialRounds: number): Promise<Row> {
  const made: Netns[] = [];
  try {
    const node = await createNetns();
    made.push(node);
    const floorNs = await createNetns();
    made.push(floorNs);
    const tracker = new ChangeTracker({ family: 'IPv4', nodeName: 'node1' });
    for (let i = 0; i < services; i++) {
      tracker.updateService(serviceObj(i));
      tracker.updateEndpointSlice(sliceObj(i));
    }
    const { backend, last, floor, fetchProbe } = recordingBackend(mode, node);
    const first = tracker.take();
    const cpu0 = process.cpuUsage();
    const full = await backend.sync({ full: true, state: first.state, changed: first.changed });
    const syncCpuMs = selfCpuMs(cpu0);
    if (!full.applied) throw new Error(`${mode} full sync at ${services} services was not applied`);
    const rssMB = process.memoryUsage().rss / 1048576;
    const bytes = last().length;
    const children0 = childrenCpuMs();
    const floorMs = await floor(floorNs);
    const floorCpuMs = childrenCpuMs() - children0;

    const partials: SyncResult['duration'][] = [];
    for (let round = 1; round <= partialRounds; round++) {
      const i = (round * 7919) % services;
      tracker.updateEndpointSlice(sliceObj(i, round));
      const r = tracker.take();
      if (r.changed.size !== 1) throw new Error(`expected one changed service, got ${r.changed.size}`);
      const p = await backend.sync({ full: false, state: r.state, changed: r.changed });
      if (!p.applied || p.full) throw new Error(`${mode} partial sync was ${p.applied ? 'upgraded to full' : 'not applied'}`);
      partials.push(p.duration);
    }
    const partial = {
      computeMs: median(partials.map((d) => d.computeMs)),
      applyMs: median(partials.map((d) => d.applyMs)),
      totalMs: median(partials.map((d) => d.totalMs)),
    };
    const fetchMs = fetchProbe ? await fetchProbe() : undefined;
    return { mode, services, full: full.duration, floorMs, syncCpuMs, floorCpuMs, bytes, partial, rssMB, fetchMs };
  } finally {
    for (const ns of made) await deleteNetns(ns);
  }
}

function fmt(ms: number): string {
  return ms >= 1000 ? `${(ms / 1000).toFixed(2)} s` : `${ms.toFixed(1)} ms`;
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: { sizes: { type: 'string', default: '1000,10000' }, modes: { type: 'string', default: 'iptables,nftables' }, partial: { type: 'string', default: '5' } },
  });
  if (process.getuid?.() !== 0) throw new Error('bench-proxy: run me as root (it loads rules into throw-away namespaces)');
  const sizes = values.sizes.split(',').map(Number);
  const modes = values.modes.split(',') as Mode[];
  for (const m of modes) if (m !== 'iptables' && m !== 'nftables') throw new Error(`unknown mode ${m}`);
  const partialRounds = Number(values.partial);
  const versions = [(await execFile('iptables', ['--version'])).stdout.trim(), (await execFile('nft', ['--version'])).stdout.trim()];
  console.log(`knode-proxy sync benchmark — ${ENDPOINTS_PER_SERVICE} endpoints per service; ${versions.join('; ')}; node ${process.version}`);
  console.log('');
  console.log('| mode | services | full: compute | full: apply | floor (load alone) | compute / floor | sync CPU / floor CPU | loaded | partial (1 endpoint): compute | partial: apply | partial: total | nft cache fetch | RSS after full |');
  console.log('| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |');
  for (const services of sizes) {
    for (const mode of modes) {
      const r = await benchOne(mode, services, partialRounds);
      console.log(
        `| ${r.mode} | ${r.services} | ${fmt(r.full.computeMs)} | ${fmt(r.full.applyMs)} | ${fmt(r.floorMs)} | ${((100 * r.full.computeMs) / r.floorMs).toFixed(1)} % | ${fmt(r.syncCpuMs)} / ${fmt(r.floorCpuMs)} = ${((100 * r.syncCpuMs) / r.floorCpuMs).toFixed(1)} % | ${(r.bytes / 1048576).toFixed(1)} MB | ${fmt(r.partial.computeMs)} | ${fmt(r.partial.applyMs)} | ${fmt(r.partial.totalMs)} | ${r.fetchMs === undefined ? '—' : fmt(r.fetchMs)} | ${r.rssMB.toFixed(0)} MB |`,
      );
    }
  }
}

main().catch((err: unknown) => {
  console.error(err instanceof Error ? err.message : String(err));
  process.exit(1);
});
