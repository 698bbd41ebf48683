/**
 * knode-agent: the program (the kubelet's command line), wiring the agent's
 * parts together.
 *
 * - Bad flags or config file: the problems on stderr, exit 2; --help: usage, exit 0.
 * - Start-up: with --bootstrap-kubeconfig, the TLS bootstrap first (agent/bootstrap;
 *   client certificate rotation then runs alongside); connect the runtime (retrying with back-off while it is not
 *   reachable), the kube client, the node agent (registration, Lease, status),
 *   the pod network (overlay, subnet file, CNI conflist; agent/network), then the
 *   pod informer (spec.nodeName=<node>) feeding the pod workers.
 * - Pods with a deletionTimestamp (or gone from the apiserver) are terminated;
 *   on success the agent makes the final delete (gracePeriodSeconds=0 and a uid
 *   precondition), as upstream's status manager does.
 * - Static pods from --pod-manifest-path (agent/pods/static) are a second pod
 *   source; mirror pods from the informer go to it instead of the workers.
 * - After the first pod list, sandboxes of pods the apiserver no longer has
 *   (deleted while the agent was down) are removed.
 * - SIGTERM / SIGINT: stop the informers, workers and node loops; pods keep
 *   running; exit 0. A broken watch never kills a pod (the informer resumes or
 *   relists and diffs, agent/kube/informer.ts).
 */
import { join } from 'node:path';
import type { V1ConfigMap, V1Pod, V1PodStatus, V1Secret, V1Service } from '@kubernetes/client-node';
import { readFile } from 'node:fs/promises';
import { errorMessage, isKnodeError } from '../lib/errors.js';
import { createLogger, type Logger } from '../lib/log.js';
import { configExitCode, loadAgentConfig, usage, type AgentConfig } from './config/index.js';
import { apiErrorSummary, createKubeClient, isConflict, isNotFound, mergePatch, podListWatch, startInformer, type KubeClient } from './kube/index.js';
import { startPodNetwork } from './network/index.js';
import { startNodeAgent } from './node/index.js';
import { detectNodeIPs } from './node/addresses.js';
import { readMachineInfo } from './node/machine.js';
import { sleep } from '../lib/sleep.js';
import { notifySystemd } from '../lib/sd-notify.js';
import { createRuntime, type DnsConfig, type Runtime } from './runtime/index.js';
import type { EventRecorder, ObjectLookup, PodSource, PodStatusSink } from './pods/types.js';
import { podKey } from './pods/types.js';
import { mergePodStatus, podStatusPatch } from './pods/status-patch.js';
import { systemMounter } from './pods/volumes.js';
import { PodWorkers } from './pods/workers.js';
import { ServiceAccountTokenManager } from './pods/tokens.js';
import { requestServiceAccountToken } from './kube/token-request.js';
import { startStaticPods } from './pods/static/index.js';
import { apiReviewer, cachingReviewer, loadServingCert, startKubeletServer, type KubeletServer } from './server/index.js';
import { bootstrapClientCertificate, runClientCertificateRotation } from './bootstrap/index.js';

/** Parses resolv.conf text into the host's DNS config (for dnsPolicy Default). Pure. */
export function parseResolvConf(text: string): DnsConfig {
  const servers: string[] = [];
  const searches: string[] = [];
  const options: string[] = [];
  for (const raw of text.split('\n')) {
    const line = raw.replace(/[#;].*$/, '').trim();
    const [key, ...rest] = line.split(/\s+/);
    if (key === 'nameserver' && rest[0] !== undefined) servers.push(rest[0]);
    else if (key === 'search' || key === 'domain') searches.splice(0, searches.length, ...rest);
    else if (key === 'options') options.push(...rest);
  }
  return { servers, searches, options };
}

/** How long the orderly stop after SIGTERM/SIGINT may take before the process exits anyway. */
const STOP_DEADLINE_MS = 10_000;

/** ConfigMaps, Secrets and Services through the API, cached for a few seconds (the workers sync every second). */

function apiLookup(kube: KubeClient, ttlMs = 5000): ObjectLookup {
  const cache = new Map<string, { at: number; value: Promise<unknown> }>();
  const cached = <T>(key: string, load: () => Promise<T>): Promise<T> => {
    const hit = cache.get(key);
    if (hit !== undefined && Date.now() - hit.at < ttlMs) return hit.value as Promise<T>;
    const value = load();
    cache.set(key, { at: Date.now(), value });
    value.catch(() => cache.delete(key));
    if (cache.size > 2000) cache.clear();
    return value;
  };
  const orUndefined = async <T>(p: Promise<T>): Promise<T | undefined> => {
    try {
      return await p;
    } catch (err) {
      if (isNotFound(err)) return undefined;
      throw err;
    }
  };
  return {
    getConfigMap: (namespace, name) => cached<V1ConfigMap | undefined>(`cm/${namespace}/${name}`, () => orUndefined(kube.core.readNamespacedConfigMap({ namespace, name }))),
    getSecret: (namespace, name) => cached<V1Secret | undefined>(`secret/${namespace}/${name}`, () => orUndefined(kube.core.readNamespacedSecret({ namespace, name }))),
    listServices: () => cached<V1Service[]>('services', async () => (await kube.core.listServiceForAllNamespaces({})).items),
  };
}

/**
 * PATCHes pods/<name>/status when it differs from the last one written for that uid: a merge patch
 * that keeps conditions others own and clears fields that went away (pods/status-patch.ts).
 */
function apiStatusSink(kube: KubeClient, log: Logger): PodStatusSink & { forget(uid: string): void } {
  const last = new Map<string, string>();
  return {
    async setStatus(pod: V1Pod, status: V1PodStatus) {
      const uid = pod.metadata?.uid ?? '';
      const text = JSON.stringify(status);
      if (last.get(uid) === text) return;
      const name = pod.metadata?.name ?? '';
      const namespace = pod.metadata?.namespace ?? 'default';
      try {
        const body = podStatusPatch(uid, pod.status, mergePodStatus(pod.status, status));
        await kube.core.patchNamespacedPodStatus({ name, namespace, body }, mergePatch);
        last.set(uid, text);
        log.debug('pod status written', { pod: podKey(pod), phase: status.phase });
      } catch (err) {
        last.delete(uid);
        if (isNotFound(err)) return; // the pod is gone: nothing to report to
        throw new Error(`status update of ${podKey(pod)} failed: ${apiErrorSummary(err)}`);
      }
    },
    forget(uid: string) {
      last.delete(uid);
    },
  };
}

async function connectRuntime(config: AgentConfig, signal: AbortSignal, log: Logger): Promise<Runtime | undefined> {
  const runtime = await createRuntime(config.containerRuntime, {
    endpoint: config.containerRuntimeEndpoint,
    network: { confDir: config.cniConfDir, binDir: config.cniBinDir },
    stateDir: join(config.rootDir, 'docker'),
    sandboxImage: config.podInfraContainerImage,
    ...(config.cgroupRoot !== undefined ? { cgroupParent: config.cgroupRoot } : {}),
  });
  for (let attempt = 1; !signal.aborted; attempt++) {
    try {
      const v = await runtime.waitReady({ timeoutMs: 30_000, signal });
      log.info('container runtime ready', { endpoint: runtime.endpoint, runtime: v.runtimeName, version: v.runtimeVersion, api: v.runtimeApiVersion });
      return runtime;
    } catch (err) {
      if (signal.aborted) break;
      log.warn('container runtime not reachable yet; still trying', { endpoint: runtime.endpoint, attempt, err: errorMessage(err) });
      await sleep(1000, signal);
    }
  }
  runtime.close();
  return undefined;
}

async function main(argv: string[]): Promise<number> {
  let loaded;
  try {
    loaded = await loadAgentConfig(argv);
  } catch (err) {
    if (isKnodeError(err, 'CONFIG_INVALID')) {
      process.stderr.write(`knode-agent: ${err.message}\n\n${usage()}`);
      return configExitCode;
    }
    throw err;
  }
  if (loaded.help) {
    process.stdout.write(loaded.usage);
    return 0;
  }
  const { config, warnings } = loaded;
  const log = createLogger({ component: 'knode-agent', level: config.logLevel, fields: { node: config.nodeName } });
  for (const w of warnings) log.warn('configuration', { warning: w });
  if (config.kubeconfig === undefined) {
    process.stderr.write('knode-agent: --kubeconfig is required (standalone mode is not supported yet)\n');
    return configExitCode;
  }

  const controller = new AbortController();
  const signal = controller.signal;
  let stopSignal: NodeJS.Signals | undefined;
  const onSignal = (s: NodeJS.Signals): void => {
    if (stopSignal !== undefined) return;
    stopSignal = s;
    log.info('stopping; pods keep running', { signal: s });
    controller.abort();
  };
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);

  // TLS bootstrap (agent/bootstrap): only when asked for; waits (retrying) until --kubeconfig is usable.
  const certOptions = {
    kubeconfigPath: config.kubeconfig,
    bootstrapKubeconfigPath: config.bootstrapKubeconfig,
    certDir: join(config.rootDir, 'pki'),
    nodeName: config.nodeName,
    signal,
    logger: log.child({ part: 'client-cert' }),
  };
  if (config.bootstrapKubeconfig !== undefined && !(await bootstrapClientCertificate(certOptions))) return 0;
  const rotation = config.bootstrapKubeconfig !== undefined && config.rotateCertificates ? runClientCertificateRotation(certOptions).catch((err: unknown) => log.error('client certificate rotation ended', { err: errorMessage(err) })) : Promise.resolve();

  let kube: KubeClient;
  try {
    kube = createKubeClient(config.kubeconfig);
  } catch (err) {
    log.error('cannot load the kubeconfig', { path: config.kubeconfig, err: errorMessage(err) });
    return 1;
  }
  log.info('starting', { apiserver: kube.server, runtimeEndpoint: config.containerRuntimeEndpoint, rootDir: config.rootDir });

  const runtime = await connectRuntime(config, signal, log.child({ part: 'runtime' }));
  if (runtime === undefined) return 0;

  const node = startNodeAgent({ config, kube, runtime, signal, logger: log.child({ part: 'node' }) });
  const network = startPodNetwork({
    kube,
    nodeName: config.nodeName,
    cniConfDir: config.cniConfDir,
    rootDir: config.rootDir,
    backend: config.overlayBackend,
    clusterCIDR: config.clusterCIDR,
    subnetFile: config.flannelSubnetFile,
    signal,
    logger: log.child({ part: 'network' }),
  });
  try {
    await node.ready;
  } catch (err) {
    if (!signal.aborted) log.error('node agent failed', { err });
    await Promise.all([node.stop(), network.done]);
    runtime.close();
    return signal.aborted ? 0 : 1;
  }
  log.info('node registered', { node: node.nodeName });
  notifySystemd(log, { READY: 1, STATUS: `node ${node.nodeName} registered` });

  const [machine, hostIPs, hostDNS] = await Promise.all([
    readMachineInfo({ rootDir: config.rootDir }),
    detectNodeIPs(config.nodeIPs),
    readFile('/etc/resolv.conf', 'utf8').then(parseResolvConf, () => undefined),
  ]);
  const lookup = apiLookup(kube);
  const tokenLog = log.child({ part: 'tokens' });
  const tokens = new ServiceAccountTokenManager((ns, sa, spec) => requestServiceAccountToken(kube, ns, sa, spec), {
    onStaleServed: (err, namespace, serviceAccount) => tokenLog.warn('token refresh failed; serving the cached token', { err, namespace, serviceAccount }),
  });
  const tokenCleanup = setInterval(() => tokens.cleanup(), 60_000);
  tokenCleanup.unref();
  signal.addEventListener('abort', () => clearInterval(tokenCleanup));
  const statusSink = apiStatusSink(kube, log.child({ part: 'status' }));
  const recorder: EventRecorder = node.recorder;
  // Static pods (--pod-manifest-path): a second pod source; their statuses go to their mirror pods.
  const staticPods = startStaticPods({
    manifestDir: config.podManifestPath,
    nodeName: config.nodeName,
    core: kube.core,
    statusSink,
    recorder,
    nodeUid: () => node.stats().nodeUid,
    signal,
    logger: log.child({ part: 'static-pods' }),
  });
  const workers = new PodWorkers({
    runtime,
    runtimeName: config.containerRuntime === 'docker' ? 'docker' : 'containerd',
    rootDir: config.rootDir,
    podLogsRoot: config.podLogsDir,
    clusterDNS: config.clusterDNS,
    clusterDomain: config.clusterDomain,
    ...(hostDNS !== undefined ? { hostDNS } : {}),
    ...(config.cgroupRoot !== undefined ? { cgroupParent: config.cgroupRoot } : {}),
    hostIPs,
    nodeAllocatable: { cpu: String(machine.cpuCores), memory: String(machine.memoryBytes) },
    memoryCapacity: machine.memoryBytes,
    lookup,
    tokens,
    recorder,
    statusSink: staticPods.statusSink,
    mounter: systemMounter,
    logger: log.child({ part: 'pods' }),
  });

  // Termination with the final delete; a uid is terminated once.
  const terminating = new Set<string>();
  const finished = new Set<string>();
  const finalize = async (pod: V1Pod, goneFromApi: boolean): Promise<void> => {
    const uid = pod.metadata?.uid ?? '';
    if (terminating.has(uid) || finished.has(uid)) return;
    terminating.add(uid);
    try {
      const plog = log.child({ pod: podKey(pod), uid });
      for (let attempt = 0; !signal.aborted; attempt++) {
        if (await workers.terminatePod(pod, pod.metadata?.deletionGracePeriodSeconds ?? undefined)) break;
        await sleep(Math.min(30_000, 1000 * 2 ** attempt), signal);
      }
      if (signal.aborted) return;
      finished.add(uid);
      if (finished.size > 10_000) finished.clear();
      statusSink.forget(uid);
      if (goneFromApi) {
        plog.info('pod removed from the apiserver; its sandbox is gone');
        return;
      }
      try {
        await kube.core.deleteNamespacedPod({ name: pod.metadata?.name ?? '', namespace: pod.metadata?.namespace ?? 'default', gracePeriodSeconds: 0, body: { gracePeriodSeconds: 0, preconditions: { uid } } });
        plog.info('pod terminated and deleted');
      } catch (err) {
        if (isNotFound(err) || isConflict(err)) plog.info('pod terminated; already deleted');
        else {
          plog.warn('final delete failed', { err: apiErrorSummary(err) });
          finished.delete(uid); // try again on the next update
        }
      }
    } finally {
      terminating.delete(uid);
    }
  };

  let informerDone: Promise<void> = Promise.resolve();
  let podList: () => V1Pod[] = () => [];
  const source: PodSource = {
    subscribe(handlers) {
      const informer = startInformer<V1Pod>({
        listWatch: podListWatch(kube),
        fieldSelector: `spec.nodeName=${config.nodeName}`,
        signal,
        logger: log.child({ part: 'pod-informer' }),
        // Mirror pods are the static pods' business, never run.
        onAdd: (pod) => void (staticPods.observeApiPod(pod, false) || handlers.onUpdate(pod)),
        onUpdate: (_old, pod) => void (staticPods.observeApiPod(pod, false) || handlers.onUpdate(pod)),
        onDelete: (pod) => void (staticPods.observeApiPod(pod, true) || handlers.onDelete(pod)),
      });
      void informer.synced.then(async () => {
        if (signal.aborted) return;
        staticPods.apiSynced();
        await staticPods.ready;
        const keep = new Set([...informer.list().map((p) => p.metadata?.uid ?? ''), ...staticPods.uids()]);
        try {
          const removed = await workers.removeOrphans(keep);
          if (removed.length > 0) log.info('removed sandboxes of pods deleted while the agent was away', { sandboxes: removed });
        } catch (err) {
          log.warn('orphan clean-up failed', { err });
        }
      });
      informerDone = informer.done;
      podList = () => informer.list();
      return () => controller.abort();
    },
  };
  source.subscribe({
    onUpdate: (pod) => {
      if (pod.metadata?.deletionTimestamp !== undefined) void finalize(pod, false);
      else if (!finished.has(pod.metadata?.uid ?? '')) workers.updatePod(pod);
    },
    onDelete: (pod) => {
      void finalize(pod, true);
    },
  });

  let server: KubeletServer | undefined;
  try {
    const tls = await loadServingCert({ certFile: config.tlsCertFile, keyFile: config.tlsPrivateKeyFile, rootDir: config.rootDir, nodeName: config.nodeName, addresses: hostIPs });
    server = await startKubeletServer({
      nodeName: config.nodeName,
      rootDir: config.rootDir,
      address: config.address,
      port: config.port === 0 ? undefined : config.port,
      healthzAddress: config.healthzBindAddress,
      healthzPort: config.healthzPort === 0 ? undefined : config.healthzPort,
      tls,
      clientCA: config.clientCAFile === undefined ? undefined : await readFile(config.clientCAFile, 'utf8'),
      reviewer: cachingReviewer(apiReviewer(kube)),
      runtime,
      pods: () => podList(),
      logger: log.child({ part: 'server' }),
    });
  } catch (err) {
    // Unlike upstream's kubelet (which exits when it cannot listen), pods keep being run without the server; the error is logged.
    log.error('kubelet server not started', { err: errorMessage(err) });
  }

  workers.attach(staticPods.source);

  await new Promise<void>((resolve) => (signal.aborted ? resolve() : signal.addEventListener('abort', () => resolve(), { once: true })));
  notifySystemd(log, { STOPPING: 1 });
  // The stop is bounded: a step stuck on the network or the runtime must not keep the process (pods keep running anyway).
  let step = 'kubelet server';
  const deadline = setTimeout(() => {
    log.warn('stop took too long; exiting', { signal: stopSignal, pendingStep: step, afterMs: STOP_DEADLINE_MS });
    process.exit(0);
  }, STOP_DEADLINE_MS);
  deadline.unref();
  await server?.stop();
  step = 'pod informer and static pods';
  await Promise.all([informerDone, staticPods.done]);
  step = 'pod workers';
  await workers.stop();
  step = 'node status, lease and network';
  await Promise.all([node.stop(), network.done, rotation]);
  runtime.close();
  clearTimeout(deadline);
  log.info('stopped', { signal: stopSignal });
  return 0;
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err: unknown) => {
    process.stderr.write(`knode-agent: ${errorMessage(err)}\n`);
    process.exit(1);
  },
);
