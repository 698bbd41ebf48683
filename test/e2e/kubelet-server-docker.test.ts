// kubectl exec, attach and port-forward for pods on the Docker runtime, for
// real (root, under the lab lock): a one-node lab on dockerd, where the
// kubelet serves the streams itself (no runtime streaming server): exec
// (stdout, stderr, exit code, stdin and its end, 5.5 MB of output, the same
// over SPDY),
// exec over WebSocket v5 by hand (the exit Status on channel 3, a TTY), a killed
// exec client, attach to a running container's output and to its stdin,
// port-forward over the WebSocket tunnel and over plain SPDY, /stats/summary
// (for a pod writing into an emptyDir and its rootfs and getting traffic: node
// fs/imageFs/network, pod network, volume, rootfs, logs, ephemeral-storage,
// all real and non-zero) — and the agent stays up and keeps serving throughout.
import t from 'tap';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { V1Pod } from '@kubernetes/client-node';
import { execFile } from '../../lib/exec.js';
import { repoRoot } from '../../lab/paths.js';
import { agentPaths } from '../../lab/machines/agent.js';
import { labNode } from '../../lab/machines/layout.js';
import { lab, until } from '../helpers/lab.js';
import { httpGet, kubectlWith as kubectl, spawnKubectl, wsExec } from '../helpers/kubectl-streams.js';
import { settledStatsChecks, statsPod, statsPodName, type Summary } from '../helpers/kubelet-stats.js';
import { controlPlanePaths } from '../../lab/machines/control-plane.js';
import { ensureClientCert, type Pki } from '../../lab/apiserver/pki.js';

const node = labNode(1);

async function running(name: string): Promise<V1Pod> {
  return until(`pod ${name} running`, async () => {
    const r = await kubectl(['get', 'pod', name, '-o', 'json']);
    if (r.code !== 0) return undefined;
    const p = JSON.parse(r.stdout) as V1Pod;
    return p.status?.phase === 'Running' && p.status.containerStatuses?.[0]?.state?.running !== undefined ? p : undefined;
  }, 120_000);
}

async function agentHealthy(): Promise<boolean> {
  const r = await lab(['exec', node.name, '--', 'curl', '-sS', '--max-time', '5', 'http://127.0.0.1:10248/healthz'], 15_000);
  return r.stdout === 'ok';
}

const pkiDir = join(controlPlanePaths.dataDir, 'pki');

/** GET on the node's kubelet API from inside its netns with a lab-CA client certificate. */
async function kubeletGet(path: string): Promise<{ code: number; body: string }> {
  const ca = { certFile: join(pkiDir, 'ca.crt'), keyFile: join(pkiDir, 'ca.key'), cert: readFileSync(join(pkiDir, 'ca.crt'), 'utf8'), key: readFileSync(join(pkiDir, 'ca.key'), 'utf8') };
  const pki: Pki = { dir: pkiDir, ca, serving: ca };
  const admin = await ensureClientCert(pki, 'admin', 'admin', ['system:masters']);
  const r = await lab(['exec', node.name, '--', 'curl', '-sS', '--max-time', '20', '--cacert', controlPlanePaths.caCert, '--cert', admin.certFile, '--key', admin.keyFile, '-o', '-', '-w', '\n%{http_code}', `https://${node.address}:10250${path}`], 30_000);
  const nl = r.stdout.lastIndexOf('\n');
  return { code: Number(r.stdout.slice(nl + 1)), body: r.stdout.slice(0, nl) };
}

const agentPid = (): number => Number(readFileSync(agentPaths(node).pidFile, 'utf8').trim());

const manifests = [
  { name: 'logger', command: ['sh', '-c', 'i=0; while true; do echo "line $i"; i=$((i+1)); sleep 0.3; done'] },
  { name: 'reader', command: ['sh', '-c', 'while read l; do echo "got $l"; done'], stdin: true },
  { name: 'web' },
];

t.before(async () => {
  await lab(['down']);
});

t.teardown(async () => {
  await lab(['down']);
});

t.test('kubectl exec / attach / port-forward on the Docker runtime', async (t) => {
  if (!existsSync(join(repoRoot, 'dist', 'knode-agent.mjs'))) await execFile('node', [join(repoRoot, 'scripts/build.mjs')]);
  const up = await lab(['up', '--nodes', '1', '--runtime', 'docker'], 300_000);
  t.equal(up.code, 0, 'scripts/lab up --nodes 1 --runtime docker', { stderr: up.stderr.slice(-3000) });
  for (const m of manifests) {
    const c = { name: m.name, image: 'knode.local/app:1.0', ...(m.command ? { command: m.command } : {}), ...(m.stdin ? { stdin: true } : {}) };
    const spec = { apiVersion: 'v1', kind: 'Pod', metadata: { name: m.name }, spec: { terminationGracePeriodSeconds: 1, containers: [c] } };
    const r = await kubectl(['create', '--validate=false', '-f', '-'], { input: JSON.stringify(spec) });
    t.equal(r.code, 0, `pod ${m.name} created`, { stderr: r.stderr });
  }
  const created = await kubectl(['create', '--validate=false', '-f', '-'], { input: JSON.stringify(statsPod()) });
  t.equal(created.code, 0, 'pod stats created', { stderr: created.stderr });
  for (const m of manifests) await running(m.name);
  await running(statsPodName);
  const pid = agentPid();

  await t.test('kubectl exec', async (t) => {
    const out = await kubectl(['exec', 'logger', '--', 'sh', '-c', 'echo hello; echo oops >&2; exit 3']);
    t.equal(out.code, 3, 'the command\'s exit code');
    t.equal(out.stdout, 'hello\n');
    t.match(out.stderr, /oops/);
    t.match(out.stderr, /command terminated with exit code 3/);
    const input = 'x'.repeat(200_000) + '\n';
    const wc = await kubectl(['exec', '-i', 'logger', '--', 'wc', '-c'], { input });
    t.equal(wc.code, 0, 'exec -i', { stderr: wc.stderr });
    t.equal(wc.stdout.trim(), String(input.length), 'stdin reaches the process and its end closes it');
    const spdy = await kubectl(['-v=6', 'exec', '-i', 'logger', '--', 'sh', '-c', 'wc -c; exit 4'], { input, env: { KUBECTL_REMOTE_COMMAND_WEBSOCKETS: 'false' } });
    t.equal(spdy.stdout.trim(), String(input.length), 'the same over SPDY (remotecommand v4 served by the kubelet)');
    t.equal(spdy.code, 4, 'and the exit code');
    t.match(spdy.stderr, /POST https:\/\/127\.0\.0\.1:6443\/api\/v1\/namespaces\/default\/pods\/logger\/exec\?.* 101 Switching Protocols/);
    const big = await kubectl(['exec', 'logger', '--', 'sh', '-c', 'yes 0123456789 | head -n 500000'], { timeoutMs: 120_000 });
    t.equal(big.code, 0);
    t.equal(big.stdout.length, 500_000 * 11, '5.5 MB of stdout arrive whole');
    const missing = await kubectl(['exec', 'logger', '--', '/no/such/binary']);
    t.not(missing.code, 0, 'a missing binary fails the exec');

    const cat = spawnKubectl(['exec', '-i', 'logger', '--', 'cat']);
    cat.child.stdin!.write('ping\n');
    await until('cat echoes', async () => (cat.out().includes('ping') ? true : undefined), 20_000);
    cat.child.kill('SIGKILL');
    await cat.exited;
    t.ok(await agentHealthy(), 'agent healthy after a killed exec client');
    t.equal((await kubectl(['exec', 'logger', '--', 'echo', 'again'])).stdout, 'again\n', 'exec still works');
  });

  await t.test('WebSocket v5 by hand: channels, close of stdin, exit Status', async (t) => {
    const q = 'command=sh&command=-c&command=echo%20out;%20echo%20err%20%3E%262;%20exit%202&stdout=true&stderr=true';
    const r = await wsExec('logger', q, ['v5.channel.k8s.io']);
    t.equal(r.protocol, 'v5.channel.k8s.io');
    t.equal(r.channels.get(1), 'out\n', 'stdout on channel 1');
    t.equal(r.channels.get(2), 'err\n', 'stderr on channel 2');
    const status = JSON.parse(r.channels.get(3) ?? '{}') as { reason?: string; details?: { causes?: { reason?: string; message?: string }[] } };
    t.equal(status.reason, 'NonZeroExitCode');
    t.equal(status.details?.causes?.find((c) => c.reason === 'ExitCode')?.message, '2');
    const input = Buffer.alloc(300_000, 'y');
    const wc = await wsExec('logger', 'command=wc&command=-c&stdin=true&stdout=true', ['v5.channel.k8s.io'], input);
    t.equal(wc.channels.get(1)?.trim(), String(input.length), 'stdin, then its close (channel 255) ends the input');
    t.equal(JSON.parse(wc.channels.get(3) ?? '{}').status, 'Success');
    const tty = await wsExec('logger', 'command=sh&command=-c&command=test%20-t%201%20%26%26%20echo%20on-a-tty&stdout=true&tty=true', ['v5.channel.k8s.io']);
    t.match(tty.channels.get(1), /on-a-tty\r?\n/, 'tty=true: the command runs on a TTY');
    await t.rejects(wsExec('logger', q, ['base64.binary.k8s.io']), /HTTP 400/, 'an unknown protocol: 400');
  });

  await t.test('kubectl attach', async (t) => {
    const attach = spawnKubectl(['attach', 'logger']);
    await until('kubectl attach shows the container\'s output', async () => (/line \d+\n/.test(attach.out()) ? true : undefined), 20_000);
    t.pass('attach streams the running container\'s output');
    attach.child.kill('SIGINT');
    await attach.exited;
    const withStdin = spawnKubectl(['attach', '-i', 'reader']);
    await until('attach -i connected', async () => {
      withStdin.child.stdin!.write('hello\n');
      return withStdin.out().includes('got hello') ? true : undefined;
    }, 20_000, 1000);
    t.pass('attach -i: stdin to the container, its answer back');
    withStdin.child.kill('SIGKILL');
    await withStdin.exited;
    t.ok(await agentHealthy(), 'agent healthy after a killed attach client');
  });

  await t.test('kubectl port-forward', async (t) => {
    for (const [how, env] of [
      ['WebSocket tunnel', {}],
      ['SPDY', { KUBECTL_PORT_FORWARD_WEBSOCKETS: 'false' }],
    ] as const) {
      const pf = spawnKubectl(['-v=6', 'port-forward', 'pod/web', ':8080'], env);
      const port = await until(`port-forward (${how}) listening`, async () => {
        const m = /Forwarding from 127\.0\.0\.1:(\d+) -> 8080/.exec(pf.out());
        return m ? Number(m[1]) : undefined;
      }, 20_000);
      t.equal((await httpGet(port, '/hostname')).trim(), 'web', `${how}: HTTP through the forwarded port`);
      t.equal((await httpGet(port, '/hostname')).trim(), 'web', `${how}: a second connection`);
      if (how === 'WebSocket tunnel') t.notMatch(pf.out(), /fallback/i, 'no SPDY fallback');
      pf.child.kill('SIGINT');
      await pf.exited;
    }
    const closed = spawnKubectl(['port-forward', 'pod/web', ':9']);
    const port = await until('port-forward to a closed port listening', async () => {
      const m = /Forwarding from 127\.0\.0\.1:(\d+) -> 9/.exec(closed.out());
      return m ? Number(m[1]) : undefined;
    }, 20_000);
    await httpGet(port, '/').catch(() => '');
    await until('the refusal reported', async () => (/error forwarding port 9 to pod.*connection refused/.test(closed.out()) ? true : undefined), 20_000);
    t.pass('a closed port in the pod: the error reaches kubectl');
    closed.child.kill('SIGINT');
    await closed.exited;
    t.ok(await agentHealthy());
  });

  await t.test('/stats/summary: fs, imageFs, network, emptyDir volume, rootfs, logs, ephemeral-storage', async (t) => {
    const web = await running('web');
    const get = await kubectl(['exec', statsPodName, '--', 'wget', '-q', '-O', '/dev/null', `http://${web.status?.podIP ?? ''}:8080/`]);
    t.equal(get.code, 0, 'the stats pod fetched a page from the web pod', { stderr: get.stderr });
    const checks = await settledStatsChecks(async () => {
      const r = await kubeletGet('/stats/summary');
      if (r.code !== 200) throw new Error(`HTTP ${r.code}`);
      return JSON.parse(r.body) as Summary;
    });
    for (const c of checks) t.ok(c.ok, c.what, { got: c.got });
    t.ok(checks.length > 0, 'the Summary was read');
  });

  t.equal(agentPid(), pid, 'the same agent process served everything');
});
