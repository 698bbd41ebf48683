// The kubelet server of knode-agent in the lab, for real (root, under the lab
// lock): a one-node lab; the kubelet API itself (inside the node's network
// namespace, with curl): no credentials → 401, a lab-CA client certificate of
// a user without nodes/proxy → 403, the admin certificate → 200 (the serving
// certificate verifies against the lab CA); bearer tokens checked through a
// real TokenReview on the lab apiserver (its static lab tokens): an unknown
// token → 401, lab-viewer's → 403 and its exec never runs, lab-admin's → 200
// with /pods, /containerLogs, /run working; /metrics and /stats/summary (CPU,
// memory, and for a pod writing into an emptyDir and its rootfs and getting
// traffic: node fs/imageFs/network, pod network, volume, rootfs, logs,
// ephemeral-storage, all real and non-zero), a
// malformed exec → 400; through the lab apiserver with kubectl: logs (tail,
// timestamps, -f, -f across a log rotation, -f ending with the container,
// --previous after a restart),
// a ~50 MB log (whole, tail, limit-bytes; the agent's RSS stays bounded), exec (stdout, stderr, exit code,
// stdin with its end), a killed exec client, exec over WebSocket v5 and v4,
// port-forward over the WebSocket tunnel — and the agent
// stays up and keeps serving throughout.
import t from 'tap';
import { existsSync, readFileSync } from 'node:fs';
import { rename } from 'node:fs/promises';
import { join } from 'node:path';
import type { V1Pod } from '@kubernetes/client-node';
import { execFile, type ExecResult } from '../../lib/exec.js';
import { repoRoot } from '../../lab/paths.js';
import { controlPlanePaths, readLabTokens } from '../../lab/machines/control-plane.js';
import { agentPaths } from '../../lab/machines/agent.js';
import { labNode } from '../../lab/machines/layout.js';
import { containerdPaths } from '../../lab/machines/containerd.js';
import { createCriRuntime } from '../../agent/runtime/cri/client.js';
import { ensureClientCert, type CertPair, type Pki } from '../../lab/apiserver/pki.js';
import { httpGet, spawnKubectl, wsExec } from '../helpers/kubectl-streams.js';
import { until } from '../helpers/poll.js';
import { settledStatsChecks, statsPod, statsPodName, type Summary } from '../helpers/kubelet-stats.js';

const labScript = join(repoRoot, 'scripts/lab');
const node = labNode(1);
const kubeletUrl = `https://${node.address}:10250`;
const pkiDir = join(controlPlanePaths.dataDir, 'pki');

function lab(args: string[], timeoutMs = 180_000): Promise<ExecResult> {
  return execFile(labScript, args, { allowFailure: true, timeoutMs });
}

const kubeEnv = { ...process.env, KUBECONFIG: controlPlanePaths.adminKubeconfig };

function kubectl(args: string[], input?: string, timeoutMs = 60_000, env: Record<string, string> = {}): Promise<ExecResult> {
  return execFile('kubectl', args, { allowFailure: true, timeoutMs, env: { ...kubeEnv, ...env }, ...(input !== undefined ? { input } : {}) });
}

async function pod(name: string): Promise<V1Pod> {
  const r = await kubectl(['get', 'pod', name, '-o', 'json']);
  if (r.code !== 0) throw new Error(r.stderr);
  return JSON.parse(r.stdout) as V1Pod;
}

const running = (name: string): Promise<V1Pod> =>
  until(`pod ${name} running`, async () => {
    const p = await pod(name);
    return p.status?.phase === 'Running' && p.status.containerStatuses?.[0]?.state?.running !== undefined ? p : undefined;
  }, 90_000);

/** curl inside the node's network namespace; returns "<http code>\n<body>". */
async function curl(path: string, o: { cert?: CertPair; method?: string; headers?: string[] } = {}): Promise<{ code: number; body: string }> {
  const args = ['-sS', '--max-time', '20', '--cacert', controlPlanePaths.caCert, '-o', '-', '-w', '\n%{http_code}', '-X', o.method ?? 'GET'];
  if (o.cert) args.push('--cert', o.cert.certFile, '--key', o.cert.keyFile);
  for (const h of o.headers ?? []) args.push('-H', h);
  const r = await lab(['exec', node.name, '--', 'curl', ...args, `${kubeletUrl}${path}`], 30_000);
  const nl = r.stdout.lastIndexOf('\n');
  return { code: Number(r.stdout.slice(nl + 1)), body: r.stdout.slice(0, nl) };
}

/** The lab CA, to issue client certificates with. */
function labPki(): Pki {
  const ca = { certFile: join(pkiDir, 'ca.crt'), keyFile: join(pkiDir, 'ca.key'), cert: readFileSync(join(pkiDir, 'ca.crt'), 'utf8'), key: readFileSync(join(pkiDir, 'ca.key'), 'utf8') };
  return { dir: pkiDir, ca, serving: ca };
}

async function agentHealthy(): Promise<boolean> {
  const r = await lab(['exec', node.name, '--', 'curl', '-sS', '--max-time', '5', 'http://127.0.0.1:10248/healthz'], 15_000);
  return r.stdout === 'ok';
}

function agentPid(): number {
  return Number(readFileSync(agentPaths(node).pidFile, 'utf8').trim());
}

function agentRssMB(): number {
  return Number(/^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${agentPid()}/status`, 'utf8'))?.[1] ?? NaN) / 1024;
}

const manifests = [
  { name: 'logger', command: ['sh', '-c', 'i=0; while true; do echo "line $i"; echo "err $i" >&2; i=$((i+1)); sleep 0.3; done'] },
  { name: 'crasher', command: ['sh', '-c', 'echo "run-$(date +%s)-$RANDOM"; sleep 4; exit 1'] },
  { name: 'big', command: ['sh', '-c', 'yes 0123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890123456789 | head -n 500000; echo END; sleep 3600'] },
  { name: 'web' },
];

t.before(async () => {
  await lab(['down']);
});

t.teardown(async () => {
  await lab(['down']);
});

t.test('kubelet server in the lab', async (t) => {
  if (!existsSync(join(repoRoot, 'dist', 'knode-agent.mjs'))) await execFile('node', [join(repoRoot, 'scripts/build.mjs')]);
  const up = await lab(['up', '--nodes', '1', '--runtime', 'containerd']);
  t.equal(up.code, 0, 'scripts/lab up --nodes 1', { stderr: up.stderr.slice(-3000) });
  for (const m of manifests) {
    const spec = { apiVersion: 'v1', kind: 'Pod', metadata: { name: m.name }, spec: { terminationGracePeriodSeconds: 1, containers: [{ name: m.name, image: 'knode.local/app:1.0', ...(m.command ? { command: m.command } : {}) }] } };
    const r = await kubectl(['create', '--validate=false', '-f', '-'], JSON.stringify(spec));
    t.equal(r.code, 0, `pod ${m.name} created`, { stderr: r.stderr });
  }
  const created = await kubectl(['create', '--validate=false', '-f', '-'], JSON.stringify(statsPod()));
  t.equal(created.code, 0, 'pod stats created', { stderr: created.stderr });
  for (const m of manifests) await running(m.name);
  await running(statsPodName);
  const podNames = [...manifests.map((m) => m.name), statsPodName].sort();
  const pid = agentPid();

  await t.test('kubelet API: 401 / 403 / 200 and the lab-CA serving certificate', async (t) => {
    const pki = labPki();
    const viewer = await ensureClientCert(pki, 'kserver-test-viewer', 'kserver-viewer', ['viewers']);
    const admin = await ensureClientCert(pki, 'admin', 'admin', ['system:masters']);
    const anon = await curl('/pods');
    t.equal(anon.code, 401, 'no credentials: 401');
    t.equal((await curl('/exec/default/logger/logger?command=true&output=1', { method: 'POST', headers: ['Connection: Upgrade', 'Upgrade: SPDY/3.1'] })).code, 401, 'anonymous exec upgrade: 401');
    const denied = await curl('/pods', { cert: viewer });
    t.equal(denied.code, 403, 'a user without nodes/proxy: 403');
    t.match(denied.body, /user=kserver-viewer/);
    t.equal((await curl('/exec/default/logger/logger?command=true&output=1', { cert: viewer, method: 'POST', headers: ['Connection: Upgrade', 'Upgrade: SPDY/3.1'] })).code, 403, 'exec without rights: 403');
    const ok = await curl('/pods', { cert: admin });
    t.equal(ok.code, 200, 'admin: 200 (curl verified the kubelet certificate against the lab CA)');
    const names = (JSON.parse(ok.body) as { items: V1Pod[] }).items.map((p) => p.metadata?.name).sort();
    t.same(names, podNames, '/pods lists the node\'s pods');
    const metrics = await curl('/metrics', { cert: admin });
    t.equal(metrics.code, 200);
    t.match(metrics.body, /kubelet_running_pods \d+/);
    t.match(metrics.body, /kubelet_running_containers\{container_state="running"\} [1-9]/);
    t.match(metrics.body, /kubelet_http_requests_total\{method="GET",path="pods",server_type="readwrite"\} [1-9]/);
    const stats = await curl('/stats/summary', { cert: admin });
    t.equal(stats.code, 200);
    const summary = JSON.parse(stats.body) as { node: { nodeName: string; memory: { usageBytes?: number } }; pods: { podRef: { name: string }; containers: { name: string; memory?: { workingSetBytes?: number } }[] }[] };
    t.equal(summary.node.nodeName, node.name);
    t.ok((summary.node.memory.usageBytes ?? 0) > 0, 'node memory usage');
    const logger = summary.pods.find((p) => p.podRef.name === 'logger');
    t.ok(logger !== undefined && (logger.containers[0]?.memory?.workingSetBytes ?? 0) > 0, 'the logger pod with its container\'s memory from CRI stats');
    const bad = await curl('/exec/default/logger/logger?output=1', { cert: admin, method: 'POST', headers: ['Connection: Upgrade', 'Upgrade: SPDY/3.1'] });
    t.equal(bad.code, 400, 'malformed exec (no command): 400');
    t.match(bad.body, /at least 1 command/);
    t.equal((await curl('/exec/default/logger/nope?command=true&output=1', { cert: admin, method: 'POST', headers: ['Connection: Upgrade', 'Upgrade: SPDY/3.1'] })).code, 404, 'exec in an unknown container: 404');
    t.equal((await curl('/run/default/logger/logger?cmd=echo%20ran', { cert: admin, method: 'POST' })).body, 'ran\n', '/run');
    t.ok(await agentHealthy(), 'agent healthy');
  });

  await t.test('/stats/summary: fs, imageFs, network, emptyDir volume, rootfs, logs, ephemeral-storage', async (t) => {
    const webIp = (await pod('web')).status?.podIP ?? '';
    const get = await kubectl(['exec', statsPodName, '--', 'wget', '-q', '-O', '/dev/null', `http://${webIp}:8080/`]);
    t.equal(get.code, 0, 'the stats pod fetched a page from the web pod', { stderr: get.stderr });
    const admin = await ensureClientCert(labPki(), 'admin', 'admin', ['system:masters']);
    const checks = await settledStatsChecks(async () => {
      const r = await curl('/stats/summary', { cert: admin });
      if (r.code !== 200) throw new Error(`HTTP ${r.code}`);
      return JSON.parse(r.body) as Summary;
    });
    for (const c of checks) t.ok(c.ok, c.what, { got: c.got });
    t.ok(checks.length > 0, 'the Summary was read');
  });

  await t.test('kubelet API with bearer tokens: a real TokenReview on the lab apiserver', async (t) => {
    const tokens = await readLabTokens();
    const bearer = (token: string): string[] => [`Authorization: Bearer ${token}`];
    const upgrade = ['Connection: Upgrade', 'Upgrade: SPDY/3.1', 'X-Stream-Protocol-Version: v4.channel.k8s.io'];
    t.equal((await curl('/pods', { headers: bearer('not-a-lab-token') })).code, 401, 'an unknown token: 401');
    const denied = await curl('/pods', { headers: bearer(tokens['lab-viewer']) });
    t.equal(denied.code, 403, 'lab-viewer (authenticated, no nodes/proxy): 403');
    t.match(denied.body, /user=lab-viewer, verb=get, resource=nodes, subresource=proxy/);
    const marker = `/tmp/token-exec-${process.pid}`;
    const exec = await curl(`/exec/default/logger/logger?command=touch&command=${encodeURIComponent(marker)}&output=1`, { method: 'POST', headers: [...bearer(tokens['lab-viewer']), ...upgrade] });
    t.equal(exec.code, 403, 'lab-viewer\'s exec upgrade: 403');
    t.equal((await curl(`/run/default/logger/logger?cmd=touch%20${encodeURIComponent(marker)}`, { method: 'POST', headers: bearer(tokens['lab-viewer']) })).code, 403, 'lab-viewer\'s /run: 403');
    t.equal((await curl('/containerLogs/default/logger/logger?tailLines=1', { headers: bearer(tokens['lab-viewer']) })).code, 403, 'lab-viewer\'s logs (nodes/log): 403');
    const ok = await curl('/pods', { headers: bearer(tokens['lab-admin']) });
    t.equal(ok.code, 200, 'lab-admin (system:masters): 200');
    t.same((JSON.parse(ok.body) as { items: V1Pod[] }).items.map((p) => p.metadata?.name).sort(), podNames);
    const logs = await curl('/containerLogs/default/logger/logger?tailLines=2', { headers: bearer(tokens['lab-admin']) });
    t.equal(logs.code, 200, 'lab-admin\'s logs: 200');
    t.match(logs.body, /^(line|err) \d+\n(line|err) \d+\n?$/);
    t.equal((await curl('/run/default/logger/logger?cmd=echo%20by-token', { method: 'POST', headers: bearer(tokens['lab-admin']) })).body, 'by-token\n', 'lab-admin\'s /run: the command ran');
    const gone = await kubectl(['exec', 'logger', '--', 'sh', '-c', `test -e ${marker} && echo present || echo absent`]);
    t.equal(gone.stdout, 'absent\n', 'lab-viewer\'s exec and /run never ran (no marker file in the container)');
    t.ok(await agentHealthy(), 'agent healthy');
  });

  await t.test('kubectl logs', async (t) => {
    const tail = await kubectl(['logs', 'logger', '--tail=4']);
    t.equal(tail.code, 0, 'logs --tail', { stderr: tail.stderr });
    const lines = tail.stdout.trimEnd().split('\n');
    t.equal(lines.length, 4);
    t.ok(lines.every((l) => /^(line|err) \d+$/.test(l)), 'stdout and stderr lines');
    const ts = await kubectl(['logs', 'logger', '--tail=1', '--timestamps']);
    t.match(ts.stdout, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+Z (line|err) \d+\n$/, '--timestamps');
    const since = await kubectl(['logs', 'logger', '--since=2s']);
    const n = since.stdout.trimEnd().split('\n').length;
    t.ok(n > 0 && n < 40, `--since=2s gives the last few lines (${n})`);

    const follow = spawnKubectl(['logs', '-f', 'logger', '--tail=1']);
    const seen = await until('3 followed lines', async () => {
      const ls = follow.out().split('\n').filter((l) => /^line \d+$/.test(l));
      return ls.length >= 3 ? ls : undefined;
    }, 20_000);
    const nums = seen.map((l) => Number(l.split(' ')[1]));
    t.ok(nums.every((v, i) => i === 0 || v === nums[i - 1]! + 1), `logs -f streams new lines in order (${nums.join(',')})`);

    // Rotation as upstream's kubelet does it: rename the file, ReopenContainerLog; the follower goes on with the new file.
    const id = ((await pod('logger')).status?.containerStatuses?.[0]?.containerID ?? '').replace(/^containerd:\/\//, '');
    const cri = createCriRuntime({ endpoint: `unix://${containerdPaths(node).socket}`, requestTimeoutMs: 30_000 });
    t.teardown(() => cri.close());
    const logPath = (await cri.containerStatus(id)).status.logPath;
    const lastBefore = Math.max(...follow.out().split('\n').filter((l) => /^line \d+$/.test(l)).map((l) => Number(l.split(' ')[1])));
    await rename(logPath, `${logPath}.20260101-000000`);
    await cri.reopenContainerLog(id);
    const after = await until('lines written after the rotation', async () => {
      const ls = follow.out().split('\n').filter((l) => /^line \d+$/.test(l)).map((l) => Number(l.split(' ')[1]));
      return ls.filter((v) => v > lastBefore + 3).length >= 2 ? ls : undefined;
    }, 20_000);
    t.ok(after.length > seen.length, 'logs -f follows the new file after a rotation');
    t.match((await kubectl(['logs', 'logger', '--tail=1'])).stdout, /^(line|err) \d+\n$/, 'logs read the new file');
    follow.child.kill('SIGINT');
    await follow.exited;

    const previous = await until('crasher restarted', async () => {
      const p = await pod('crasher');
      return (p.status?.containerStatuses?.[0]?.restartCount ?? 0) >= 1 ? p : undefined;
    }, 60_000);
    t.ok(previous, 'crasher restarted');
    const prev = await kubectl(['logs', 'crasher', '--previous']);
    t.equal(prev.code, 0, 'logs --previous', { stderr: prev.stderr });
    t.match(prev.stdout, /^run-\d+-\d+\n$/, 'the previous attempt\'s log');
    const noPrev = await kubectl(['logs', 'logger', '--previous']);
    t.not(noPrev.code, 0, 'no previous attempt: an error');
    t.match(noPrev.stderr, /previous terminated container "logger" in pod "default\/logger" not found/);

    await running('crasher');
    const ends = spawnKubectl(['logs', '-f', 'crasher']);
    const code = await Promise.race([ends.exited, new Promise<string>((r) => setTimeout(() => r('still running'), 30_000))]);
    t.equal(code, 0, 'logs -f ends when the container exits');
    if (code !== 0) ends.child.kill('SIGKILL');
    t.match(ends.out(), /run-\d+-\d+/);
  });

  await t.test('a ~50 MB log', async (t) => {
    await until('big wrote its log', async () => ((await kubectl(['logs', 'big', '--tail=1'])).stdout === 'END\n' ? true : undefined), 120_000);
    const rssBefore = agentRssMB();
    const whole = await kubectl(['logs', 'big'], undefined, 240_000);
    const rssAfter = agentRssMB();
    t.equal(whole.code, 0);
    t.equal(whole.stdout.length, 500_000 * 101 + 4, 'every byte of the 50 MB log');
    t.ok(rssAfter - rssBefore < 64, `the agent's RSS stayed bounded while serving it (${rssBefore.toFixed(0)} → ${rssAfter.toFixed(0)} MB)`);
    t.ok(whole.stdout.endsWith('0123456789\nEND\n'));
    t.equal((await kubectl(['logs', 'big', '--limit-bytes=15'])).stdout, '012345678901234', '--limit-bytes');
    t.equal((await kubectl(['logs', 'big', '--tail=2'])).stdout.split('\n')[1], 'END');
    t.ok(await agentHealthy(), 'agent healthy after the big log');
  });

  await t.test('kubectl exec', async (t) => {
    const out = await kubectl(['exec', 'logger', '--', 'sh', '-c', 'echo hello; echo oops >&2; exit 3']);
    t.equal(out.code, 3, 'the command\'s exit code');
    t.equal(out.stdout, 'hello\n');
    t.match(out.stderr, /oops/);
    t.match(out.stderr, /command terminated with exit code 3/);
    const big = await kubectl(['exec', 'logger', '--', 'sh', '-c', 'yes 0123456789 | head -n 500000'], undefined, 120_000);
    t.equal(big.code, 0);
    t.equal(big.stdout.length, 500_000 * 11, '5.5 MB of stdout arrive whole');
    const input = 'x'.repeat(200_000) + '\n';
    const wc = await kubectl(['exec', '-i', 'logger', '--', 'wc', '-c'], input);
    t.equal(wc.code, 0, 'exec -i', { stderr: wc.stderr });
    t.equal(wc.stdout.trim(), String(input.length), 'stdin reaches the process and its end closes it');
    const spdy = await kubectl(['-v=6', 'exec', '-i', 'logger', '--', 'wc', '-c'], input, 60_000, { KUBECTL_REMOTE_COMMAND_WEBSOCKETS: 'false' });
    t.equal(spdy.stdout.trim(), String(input.length), 'the same over SPDY (passed through to the runtime)');
    t.match(spdy.stderr, /POST https:\/\/127\.0\.0\.1:6443\/api\/v1\/namespaces\/default\/pods\/logger\/exec\?.* 101 Switching Protocols/);
    const ctr = await kubectl(['exec', 'logger', '-c', 'logger', '--', 'cat', '/etc/hostname']);
    t.equal(ctr.stdout.trim(), 'logger', 'exec -c');

    const cat = spawnKubectl(['exec', '-i', 'logger', '--', 'cat']);
    cat.child.stdin!.write('ping\n');
    await until('cat echoes', async () => (cat.out().includes('ping') ? true : undefined), 20_000);
    cat.child.kill('SIGKILL');
    await cat.exited;
    t.ok(await agentHealthy(), 'agent healthy after a killed exec client');
    const attach = spawnKubectl(['attach', 'logger']);
    await until('kubectl attach shows the container\'s output', async () => (/line \d+\n/.test(attach.out()) ? true : undefined), 20_000);
    t.pass('kubectl attach streams the running container\'s output');
    attach.child.kill('SIGINT');
    await attach.exited;
    t.equal((await kubectl(['exec', 'logger', '--', 'echo', 'again'])).stdout, 'again\n', 'exec still works');
  });

  await t.test('WebSocket exec: v5.channel.k8s.io (translated to SPDY by the kubelet) and v4 (passed through)', async (t) => {
    const q = 'command=sh&command=-c&command=echo%20out;%20echo%20err%20%3E%262;%20exit%202&stdout=true&stderr=true';
    for (const protocol of ['v5.channel.k8s.io', 'v4.channel.k8s.io']) {
      const r = await wsExec('logger', q, [protocol]);
      t.equal(r.protocol, protocol, `${protocol} negotiated`);
      t.equal(r.channels.get(1), 'out\n', 'stdout on channel 1');
      t.equal(r.channels.get(2), 'err\n', 'stderr on channel 2');
      const status = JSON.parse(r.channels.get(3) ?? '{}') as { status?: string; reason?: string; details?: { causes?: { reason?: string; message?: string }[] } };
      t.equal(status.reason, 'NonZeroExitCode', 'the exit status on the error channel');
      t.same(status.details?.causes?.find((c) => c.reason === 'ExitCode')?.message, '2');
    }
    const input = Buffer.alloc(300_000, 'y');
    const wc = await wsExec('logger', 'command=wc&command=-c&stdin=true&stdout=true', ['v5.channel.k8s.io', 'v4.channel.k8s.io'], input);
    t.equal(wc.protocol, 'v5.channel.k8s.io', 'v5 preferred');
    t.equal(wc.channels.get(1)?.trim(), String(input.length), 'v5: stdin data, then its close (channel 255) ends the process\'s input');
    t.equal(JSON.parse(wc.channels.get(3) ?? '{}').status, 'Success');
    const verbose = await kubectl(['-v=6', 'exec', 'logger', '--', 'true']);
    t.equal(verbose.code, 0);
    t.notMatch(verbose.stderr, /fallback/i, 'kubectl exec stays on WebSocket (no SPDY fallback)');
    await t.rejects(wsExec('logger', q, ['base64.binary.k8s.io']), /HTTP 400/, 'an unknown protocol: 400');
    t.ok(await agentHealthy());
  });

  await t.test('kubectl port-forward (WebSocket tunnel)', async (t) => {
    const pf = spawnKubectl(['-v=6', 'port-forward', 'pod/web', ':8080']);
    const port = await until('port-forward listening', async () => {
      const m = /Forwarding from 127\.0\.0\.1:(\d+) -> 8080/.exec(pf.out());
      return m ? Number(m[1]) : undefined;
    }, 20_000);
    t.equal((await httpGet(port, '/hostname')).trim(), 'web', 'HTTP through the forwarded port');
    t.equal((await httpGet(port, '/hostname')).trim(), 'web', 'a second connection');
    t.notMatch(pf.out(), /fallback/i, 'no SPDY fallback');
    pf.child.kill('SIGINT');
    await pf.exited;
    const spdy = spawnKubectl(['port-forward', 'pod/web', ':8080'], { KUBECTL_PORT_FORWARD_WEBSOCKETS: 'false' });
    const spdyPort = await until('SPDY port-forward listening', async () => {
      const m = /Forwarding from 127\.0\.0\.1:(\d+) -> 8080/.exec(spdy.out());
      return m ? Number(m[1]) : undefined;
    }, 20_000);
    t.equal((await httpGet(spdyPort, '/hostname')).trim(), 'web', 'port-forward over SPDY (passed through)');
    spdy.child.kill('SIGINT');
    await spdy.exited;
  });

  t.equal(agentPid(), pid, 'the same agent process served everything');
});
