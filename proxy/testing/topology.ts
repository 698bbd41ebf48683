/**
 * A throw-away network topology for knode-proxy integration tests (root only).
 *
 *   client (192.168.50.2) ── veth ── node (192.168.50.1, br0 10.244.0.1/24) ── veth ── pod1 (10.244.0.11)
 *                                                                          └─ veth ── pod2 (10.244.0.12)
 *
 * Every namespace is named `knode-t-<rand>-<role>`; links are created directly inside the
 * namespaces (`ip -n`), so nothing is added to, or routed through, the root namespace. The
 * rules under test are loaded into the node namespace only. Pods run `busybox httpd`; clients use curl on :8080
 * serving a page that names them. `destroy()` kills the servers and deletes the namespaces,
 * and tolerates a half-built topology.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, mkdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execFile, type ExecResult } from '../../lib/exec.js';

export interface Topology {
  rand: string;
  ns: { node: string; client: string; pod1: string; pod2: string };
  nodePath: string;
  nodeIP: string;
  clientIP: string;
  podIPs: [string, string];
  podCIDR: string;
  /** Run a program in one of the namespaces. */
  exec(role: keyof Topology['ns'], file: string, args: string[], opts?: { allowFailure?: boolean; timeoutMs?: number }): Promise<ExecResult>;
  /** `curl` from a namespace (busybox-static's wget crashes here); the body or curl's error and exit code (7: refused). */
  get(role: keyof Topology['ns'], url: string, timeoutSec?: number): Promise<{ ok: boolean; code: number; body: string; ms: number }>;
  destroy(): Promise<void>;
}

const BUSYBOX = '/usr/bin/busybox';

export async function createTopology(): Promise<Topology> {
  const rand = randomBytes(3).toString('hex');
  const ns = {
    node: `knode-t-${rand}-node`,
    client: `knode-t-${rand}-cli`,
    pod1: `knode-t-${rand}-p1`,
    pod2: `knode-t-${rand}-p2`,
  };
  const created: string[] = [];
  const servers: ChildProcess[] = [];
  const dir = await mkdtemp(join(tmpdir(), `knode-t-${rand}-`));
  const ip = (args: string[]): Promise<ExecResult> => execFile('ip', args, { timeoutMs: 10_000 });
  const exec: Topology['exec'] = (role, file, args, opts = {}) =>
    execFile('ip', ['netns', 'exec', ns[role], file, ...args], { timeoutMs: opts.timeoutMs ?? 20_000, allowFailure: opts.allowFailure ?? false });

  const destroy = async (): Promise<void> => {
    for (const s of servers) if (s.exitCode === null && s.pid !== undefined) s.kill('SIGKILL');
    for (const n of created.reverse()) await execFile('ip', ['netns', 'del', n], { allowFailure: true });
    await rm(dir, { recursive: true, force: true });
  };

  try {
    for (const n of Object.values(ns)) {
      await ip(['netns', 'add', n]);
      created.push(n);
      await ip(['-n', n, 'link', 'set', 'lo', 'up']);
    }
    // node ↔ client
    await ip(['-n', ns.node, 'link', 'add', 'eth0', 'type', 'veth', 'peer', 'name', 'eth0', 'netns', ns.client]);
    await ip(['-n', ns.node, 'addr', 'add', '192.168.50.1/24', 'dev', 'eth0']);
    await ip(['-n', ns.client, 'addr', 'add', '192.168.50.2/24', 'dev', 'eth0']);
    await ip(['-n', ns.node, 'link', 'set', 'eth0', 'up']);
    await ip(['-n', ns.client, 'link', 'set', 'eth0', 'up']);
    await ip(['-n', ns.client, 'route', 'add', 'default', 'via', '192.168.50.1']);
    // bridge and pods
    await ip(['-n', ns.node, 'link', 'add', 'br0', 'type', 'bridge']);
    await ip(['-n', ns.node, 'addr', 'add', '10.244.0.1/24', 'dev', 'br0']);
    await ip(['-n', ns.node, 'link', 'set', 'br0', 'up']);
    const pods: [keyof Topology['ns'], string, string][] = [
      ['pod1', 'vp1', '10.244.0.11'],
      ['pod2', 'vp2', '10.244.0.12'],
    ];
    for (const [role, host, addr] of pods) {
      await ip(['-n', ns.node, 'link', 'add', host, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', ns[role]]);
      await ip(['-n', ns.node, 'link', 'set', host, 'master', 'br0', 'up']);
      await ip(['-n', ns[role], 'addr', 'add', `${addr}/24`, 'dev', 'eth0']);
      await ip(['-n', ns[role], 'link', 'set', 'eth0', 'up']);
      await ip(['-n', ns[role], 'route', 'add', 'default', 'via', '10.244.0.1']);
      const www = join(dir, role);
      await mkdir(www);
      await writeFile(join(www, 'index.html'), `${role}\n`);
      const child = spawn('ip', ['netns', 'exec', ns[role], BUSYBOX, 'httpd', '-f', '-p', '8080', '-h', www], { stdio: 'ignore' });
      servers.push(child);
    }
    // The node forwards; service IPs are routed to the bridge so that locally generated
    // packets to them get past routing to the nat OUTPUT hook.
    await exec('node', 'sysctl', ['-q', '-w', 'net.ipv4.ip_forward=1']);
    await ip(['-n', ns.node, 'route', 'add', '10.96.0.0/12', 'dev', 'br0']);

    const topo: Topology = {
      rand,
      ns,
      nodePath: `/var/run/netns/${ns.node}`,
      nodeIP: '192.168.50.1',
      clientIP: '192.168.50.2',
      podIPs: ['10.244.0.11', '10.244.0.12'],
      podCIDR: '10.244.0.0/16',
      exec,
      async get(role, url, timeoutSec = 2) {
        const t0 = performance.now();
        const r = await exec(role, 'curl', ['-sS', '-m', String(timeoutSec), url], { allowFailure: true, timeoutMs: (timeoutSec + 3) * 1000 });
        return { ok: r.code === 0, code: r.code, body: r.code === 0 ? r.stdout.trim() : r.stderr.trim(), ms: performance.now() - t0 };
      },
      destroy,
    };
    // Wait for both servers.
    for (const [i, addr] of ['10.244.0.11', '10.244.0.12'].entries()) {
      const deadline = Date.now() + 10_000;
      for (;;) {
        const r = await topo.get('node', `http://${addr}:8080/`, 1);
        if (r.ok) break;
        if (Date.now() > deadline) throw new Error(`pod${i + 1} httpd did not come up: ${r.body}`);
        await new Promise((res) => setTimeout(res, 100));
      }
    }
    return topo;
  } catch (err) {
    await destroy();
    throw err;
  }
}
