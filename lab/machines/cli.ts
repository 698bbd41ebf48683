/**
 * The machine subcommands of knode-lab: up, down, status, exec, env.
 * Human progress goes to stderr (which step, how long); program output
 * (status table, env lines) to stdout; a command returns its exit code.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { KnodeError } from '../../lib/errors.js';
import { labDataDir, labRegistry, labRunDir, registry, repoRoot, underlay, underlayNetns } from '../paths.js';
import { startRegistry } from '../images/registry.js';
import { agentPaths, agentPid, defaultLabOverlay, ensureAgent, isOverlayBackendName, overlayBackendNames } from './agent.js';
import { ensureProxy, isProxyMode, proxyModes, proxyPid } from './proxy.js';
import { cniDaemonPid } from './cni-plugins.js';
import { controlPlanePaths, controlPlanePid, ensureControlPlane } from './control-plane.js';
import { findLeftovers, isClean, labNetnsNames, teardownLab, type StepRunner } from './cleanup.js';
import { isRuntimeKind, labNode, netnsPath, runtimeKinds, type LabNode, type RuntimeKind } from './layout.js';
import { inNetns, runInherited } from './proc.js';
import { runtimes } from './runtime.js';
import { readState, writeState, type LabState, type MachineState } from './state.js';
import { ensureTopology, maxNodes, renderTopology } from './topology.js';

export interface LabCommand {
  /** One line for `--help`. */
  summary: string;
  usage: string;
  run(argv: string[]): Promise<number>;
}

const agentBundle = join(repoRoot, 'dist', 'knode-agent.mjs');

function say(line: string): void {
  process.stderr.write(`knode-lab: ${line}\n`);
}

function seconds(ms: number): string {
  return `${(ms / 1000).toFixed(1)} s`;
}

export const step: StepRunner = async (label, fn) => {
  const t0 = Date.now();
  say(`${label} ...`);
  try {
    const r = await fn();
    say(`${label}: done in ${seconds(Date.now() - t0)}`);
    return r;
  } catch (err) {
    say(`${label}: failed after ${seconds(Date.now() - t0)}`);
    throw err;
  }
};

export class UsageError extends KnodeError {
  constructor(message: string) {
    super('LAB_USAGE', message);
  }
}

/** `--name value` and `--name=value`. */
function parseOptions(argv: string[], names: readonly string[]): Map<string, string> {
  const out = new Map<string, string>();
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    const m = /^--([a-z-]+)(?:=(.*))?$/.exec(arg);
    if (!m || !names.includes(m[1]!)) throw new UsageError(`unknown argument ${arg}`);
    const value = m[2] ?? argv[++i];
    if (value === undefined) throw new UsageError(`${arg} needs a value`);
    out.set(m[1]!, value);
  }
  return out;
}

export function parseNodeArg(arg: string): LabNode {
  const m = /^(?:node-)?([0-9]+)$/.exec(arg);
  if (!m) throw new UsageError(`not a lab node: ${arg} (use node-1 or 1)`);
  return labNode(Number(m[1]));
}

async function requireState(): Promise<LabState> {
  const state = await readState();
  if (!state) throw new KnodeError('LAB_NOT_UP', 'the lab is not up (no state file); run `scripts/lab up`');
  return state;
}

// ---------------------------------------------------------------- up

async function up(argv: string[]): Promise<number> {
  const opts = parseOptions(argv, ['nodes', 'runtime', 'proxy-mode', 'overlay']);
  const overlay = opts.get('overlay') ?? defaultLabOverlay;
  if (!isOverlayBackendName(overlay)) throw new UsageError(`--overlay takes ${overlayBackendNames.join(', ')}`);
  const proxyMode = opts.get('proxy-mode') ?? 'iptables';
  if (!isProxyMode(proxyMode)) throw new UsageError(`--proxy-mode takes ${proxyModes.join(', ')}`);
  const nodes = Number(opts.get('nodes') ?? '2');
  const runtime = opts.get('runtime') ?? 'containerd';
  if (!Number.isInteger(nodes) || nodes < 1 || nodes > maxNodes) throw new UsageError(`--nodes takes 1 to ${maxNodes}`);
  if (!isRuntimeKind(runtime)) throw new UsageError(`--runtime takes ${runtimeKinds.join(' or ')}`);
  const t0 = Date.now();

  let previous: LabState | undefined;
  try {
    previous = await readState();
  } catch (err) {
    throw new KnodeError('LAB_SHAPE_MISMATCH', 'the lab state file is unreadable; run `scripts/lab down` first', { cause: err });
  }
  if (previous && (previous.nodes !== nodes || previous.runtime !== runtime)) {
    throw new KnodeError(
      'LAB_SHAPE_MISMATCH',
      `a lab with ${previous.nodes} node(s) and ${previous.runtime} exists; run \`scripts/lab down\` first to make one with ${nodes} node(s) and ${runtime}`,
    );
  }
  const topo = renderTopology({ nodes });
  const wanted = new Set([topo.underlay.netns, ...topo.nodes.map((n) => n.netns)]);
  const strays = (await labNetnsNames()).filter((n) => !wanted.has(n));
  if (strays.length > 0) {
    throw new KnodeError('LAB_SHAPE_MISMATCH', `lab namespaces ${strays.join(', ')} are not part of a ${nodes}-node lab; run \`scripts/lab down\` first`);
  }
  const machines = topo.nodes.map((n) => labNode(n.index));
  const rt = runtimes[runtime];
  for (const other of runtimeKinds.filter((k) => k !== runtime)) {
    for (const node of machines) {
      const pid = await runtimes[other].pid(node);
      if (pid !== undefined) {
        throw new KnodeError('LAB_SHAPE_MISMATCH', `${node.name} runs ${other} (pid ${pid}); run \`scripts/lab down\` first`);
      }
    }
  }

  const state: LabState = previous ?? {
    version: 1,
    nodes,
    runtime,
    phase: 'starting',
    updatedAt: '',
    machines: machines.map(
      (n): MachineState => ({ name: n.name, netns: n.netns, address: n.address, runtimePid: undefined, socket: rt.socket(n), images: [] }),
    ),
  };
  await writeState(state);

  const net = await step(`network: underlay ${underlay.bridgeAddress}/${underlay.prefixLength} and ${nodes} node namespace(s)`, () =>
    ensureTopology(topo),
  );
  let changed = net.created.length > 0;

  // The machine's registries, served to the nodes from the underlay (a node's 127.0.0.1 is its own).
  await step(`registries: ${labRegistry.plain} (plain) and ${labRegistry.auth} (basic auth) in ${underlayNetns}`, async () => {
    for (const [name, listen] of [['plain', labRegistry.plain], ['auth', labRegistry.auth]] as const) {
      const started = await startRegistry({
        name: `lab-${name}`,
        listen,
        storageDir: registry.storageDir,
        runDir: labRegistry.runDir,
        netnsPath: netnsPath(underlayNetns),
        ...(name === 'auth' ? { auth: { user: registry.auth.user, password: registry.auth.password } } : {}),
      });
      if (started.started) changed = true;
    }
  });

  await step(`control plane: apiserver on ${controlPlanePaths.hostUrl} (host) and ${controlPlanePaths.labUrl} (lab)`, async () => {
    if ((await ensureControlPlane(machines)).started) changed = true;
  });

  await step(`runtime: ${runtime} on ${machines.map((m) => m.name).join(', ')}`, () =>
    Promise.all(
      machines.map(async (node, i) => {
        // A runtime left running in a namespace that was deleted (and made anew) sits in the old one.
        const running = await rt.pid(node);
        if (running !== undefined && !(await inNetns(running, netnsPath(node.netns)))) {
          say(`runtime: ${runtime} of ${node.name} (pid ${running}) runs outside ${node.netns}; restarting it`);
          await rt.stop(node);
        }
        const before = state.machines[i]?.runtimePid;
        const pid = await rt.start(node);
        if (pid !== before) changed = true;
        state.machines[i]!.runtimePid = pid;
      }),
    ),
  );
  await writeState(state);

  await step('images: import into each node', async () => {
    for (const [i, node] of machines.entries()) {
      const m = state.machines[i]!;
      const imported = await rt.importImages(node);
      if (imported.length > 0) changed = true;
      m.images = await rt.listImages(node);
    }
    if (state.machines.every((m) => m.images.length === 0)) say('images: no image archives under build/images yet; nothing imported');
  });

  await step(`agents: knode-agent (${runtime}, overlay ${overlay}) on ${machines.map((m) => m.name).join(', ')}`, async () => {
    if (!existsSync(agentBundle)) throw new KnodeError('AGENT_NOT_BUILT', `${agentBundle} is missing; run \`npm run build\` first`);
    for (const node of machines) if ((await ensureAgent(node, runtime, overlay)).started) changed = true;
  });
  await step(`proxies: knode-proxy (${proxyMode}) on ${machines.map((m) => m.name).join(', ')}`, async () => {
    for (const node of machines) if ((await ensureProxy(node, proxyMode)).started) changed = true;
  });
  state.phase = 'running';
  await writeState(state);
  say(`${changed ? 'lab up' : 'lab already up, nothing changed'}: ${nodes} node(s), ${runtime}, in ${seconds(Date.now() - t0)}`);
  return 0;
}

// ---------------------------------------------------------------- down

async function down(argv: string[]): Promise<number> {
  parseOptions(argv, []);
  const t0 = Date.now();
  const report = await teardownLab(step);
  for (const w of report.warnings) say(`warning: ${w}`);
  const left = await findLeftovers();
  if (!isClean(left)) {
    say(`down left things behind: ${JSON.stringify(left)}`);
    return 1;
  }
  say(
    `lab down in ${seconds(Date.now() - t0)}: ${report.runtimesStopped.length} runtime(s) stopped, ${report.killed.length} process(es) killed, ` +
      `${report.unmounted.length} mount(s) and ${report.netnsRemoved.length} namespace(s) removed`,
  );
  return 0;
}

// ---------------------------------------------------------------- status

interface NodeStatus {
  node: string;
  netns: string;
  netnsPresent: boolean;
  address: string;
  runtime: RuntimeKind;
  pid: number | undefined;
  alive: boolean;
  answering: boolean;
  socket: string;
  images: string[];
  /** knode-agent's pid. */
  agentPid: number | undefined;
  agentLog: string | undefined;
  /** knode-proxy's pid. */
  proxyPid: number | undefined;
  /** knode-cni-daemon's pid (containerd's CNI calls go through it). */
  cniDaemonPid: number | undefined;
}

async function status(argv: string[]): Promise<number> {
  const json = argv.includes('--json');
  parseOptions(argv.filter((a) => a !== '--json'), []);
  const state = await readState();
  if (!state) {
    const leftovers = await findLeftovers();
    if (json) process.stdout.write(JSON.stringify({ up: false, leftovers }, null, 2) + '\n');
    else process.stdout.write(`lab: down${isClean(leftovers) ? '' : ` (leftovers, run \`scripts/lab down\`: ${JSON.stringify(leftovers)})`}\n`);
    return 0;
  }
  const present = new Set(await labNetnsNames());
  const rt = runtimes[state.runtime];
  const rows: NodeStatus[] = [];
  for (const m of state.machines) {
    const node = parseNodeArg(m.name);
    const pid = await rt.pid(node);
    rows.push({
      node: m.name,
      netns: m.netns,
      netnsPresent: present.has(m.netns) && (pid === undefined || (await inNetns(pid, netnsPath(m.netns)))),
      address: m.address,
      runtime: state.runtime,
      pid,
      alive: pid !== undefined,
      answering: await rt.ping(node),
      socket: rt.socket(node),
      images: m.images,
      agentPid: await agentPid(node),
      agentLog: agentPaths(node).log,
      proxyPid: await proxyPid(node),
      cniDaemonPid: await cniDaemonPid(node),
    });
  }
  const apiserverPid = await controlPlanePid();
  const healthy =
    present.has(renderTopology({ nodes: state.nodes }).underlay.netns) && apiserverPid !== undefined && rows.every((r) => r.netnsPresent && r.alive && r.answering);
  if (json) {
    const apiserver = { pid: apiserverPid, alive: apiserverPid !== undefined, hostUrl: controlPlanePaths.hostUrl, labUrl: controlPlanePaths.labUrl };
    process.stdout.write(JSON.stringify({ up: true, phase: state.phase, healthy, apiserver, nodes: rows }, null, 2) + '\n');
    return healthy ? 0 : 1;
  }
  process.stdout.write(`lab: ${state.phase}, ${state.nodes} node(s), ${state.runtime}, ${healthy ? 'healthy' : 'NOT healthy'}\n`);
  process.stdout.write(`underlay: ${underlay.cidr} on ${underlay.bridge} in ${renderTopology({ nodes: 1 }).underlay.netns}\n`);
  process.stdout.write(
    `apiserver: pid ${apiserverPid ?? '-'} ${apiserverPid !== undefined ? 'alive' : 'DEAD'}  ${controlPlanePaths.hostUrl} (host), ${controlPlanePaths.labUrl} (lab)  kubeconfig ${controlPlanePaths.adminKubeconfig}\n`,
  );
  for (const r of rows) {
    process.stdout.write(
      `${r.node}  ${r.address}  netns ${r.netns}${r.netnsPresent ? '' : ' (MISSING)'}  ${r.runtime} pid ${r.pid ?? '-'} ${r.alive ? 'alive' : 'DEAD'}  ` +
        `socket ${r.answering ? 'answers' : 'DOES NOT ANSWER'} ${r.socket}  images ${r.images.join(',') || '-'}` +
        `  agent pid ${r.agentPid ?? '-'} ${r.agentPid !== undefined ? 'alive' : 'DEAD'}` +
        `  proxy pid ${r.proxyPid ?? '-'} ${r.proxyPid !== undefined ? 'alive' : 'DEAD'}` +
        `  cni-daemon pid ${r.cniDaemonPid ?? '-'} ${r.cniDaemonPid !== undefined ? 'alive' : 'DEAD'}` +
        '\n',
    );
  }
  return healthy ? 0 : 1;
}

// ---------------------------------------------------------------- exec

async function exec(argv: string[]): Promise<number> {
  const [nodeArg, sep, ...cmd] = argv;
  if (nodeArg === undefined || sep !== '--' || cmd.length === 0) throw new UsageError('usage: exec NODE -- CMD [ARGS...]');
  const node = parseNodeArg(nodeArg);
  const path = netnsPath(node.netns);
  if (!existsSync(path)) throw new KnodeError('LAB_NO_SUCH_NODE', `${node.name} does not exist (no ${path}); is the lab up?`);
  return runInherited('nsenter', [`--net=${path}`, '--', ...cmd]);
}

// ---------------------------------------------------------------- env

function shellQuote(s: string): string {
  return /^[A-Za-z0-9_./:=@-]+$/.test(s) ? s : `'${s.replace(/'/g, `'\\''`)}'`;
}

async function env(argv: string[]): Promise<number> {
  parseOptions(argv, []);
  const state = await requireState();
  const rt = runtimes[state.runtime];
  const lines: [string, string][] = [
    ['KNODE_LAB_RUN', labRunDir],
    ['KNODE_LAB_DATA', labDataDir],
    ['KNODE_LAB_RUNTIME', state.runtime],
    ['KNODE_LAB_NODES', String(state.nodes)],
    ['KUBECONFIG', controlPlanePaths.adminKubeconfig],
  ];
  for (const m of state.machines) {
    const v = rt.envVar(parseNodeArg(m.name));
    lines.push([v.name, v.value]);
  }
  for (const [k, v] of lines) process.stdout.write(`export ${k}=${shellQuote(v)}\n`);
  return 0;
}

export const machineCommands: Record<string, LabCommand> = {
  up: {
    summary: 'make the lab: underlay + N node namespaces, a runtime in each, images imported (idempotent)',
    usage: 'up [--nodes N (default 2)] [--runtime containerd|docker (default containerd)] [--proxy-mode iptables|nftables|ipvs (default iptables)] [--overlay vxlan|host-gw|none (default vxlan)]',
    run: up,
  },
  down: { summary: 'remove everything the lab made (works after crashes too)', usage: 'down', run: down },
  status: { summary: 'nodes, addresses, runtime pids and whether their sockets answer', usage: 'status [--json]', run: status },
  exec: { summary: "run a command inside a node's network namespace", usage: 'exec NODE -- CMD [ARGS...]   (NODE: node-1 or 1)', run: exec },
  env: { summary: 'print shell export lines for the lab (runtime sockets per node)', usage: 'env', run: env },
};
