/**
 * Defaulting as upstream's defaulters and admission plugins do it for the
 * fields clients read back (pods, services, namespaces, deployments,
 * replicasets, secrets). Pure functions on objects, applied at create (and to
 * updated specs where upstream defaults again).
 */
import { getArray, getMap, getString, isObject } from './object.js';
import type { Json, JsonObject, KubeObject } from './object.js';

function imagePullPolicy(image: string): string {
  const last = image.split('/').pop() ?? image;
  if (last.includes('@')) return 'IfNotPresent';
  const tag = last.includes(':') ? last.split(':').pop() : undefined;
  return tag === undefined || tag === 'latest' ? 'Always' : 'IfNotPresent';
}

function defaultContainer(c: Json): Json {
  if (!isObject(c)) return c;
  const out: JsonObject = { ...c };
  if (out.imagePullPolicy === undefined && typeof out.image === 'string') out.imagePullPolicy = imagePullPolicy(out.image);
  out.terminationMessagePath ??= '/dev/termination-log';
  out.terminationMessagePolicy ??= 'File';
  out.resources ??= {};
  const ports = getArray(out, 'ports');
  if (ports) out.ports = ports.map((p) => (isObject(p) ? { protocol: 'TCP', ...p } : p));
  return out;
}

export function defaultPodSpec(spec: JsonObject): JsonObject {
  const out: JsonObject = { ...spec };
  out.restartPolicy ??= 'Always';
  out.dnsPolicy ??= 'ClusterFirst';
  out.schedulerName ??= 'default-scheduler';
  out.terminationGracePeriodSeconds ??= 30;
  out.securityContext ??= {};
  out.enableServiceLinks ??= true;
  out.serviceAccountName ??= 'default';
  out.serviceAccount ??= out.serviceAccountName;
  out.priority ??= 0;
  out.preemptionPolicy ??= 'PreemptLowerPriority';
  for (const field of ['containers', 'initContainers']) {
    const list = getArray(out, field);
    if (list) out[field] = list.map(defaultContainer);
  }
  return out;
}

/** DefaultTolerationSeconds admission: tolerate not-ready/unreachable for 300s. */
function defaultTolerations(spec: JsonObject): void {
  const tolerations = getArray(spec, 'tolerations') ?? [];
  for (const key of ['node.kubernetes.io/not-ready', 'node.kubernetes.io/unreachable']) {
    if (tolerations.some((t) => isObject(t) && (t.key === key || (t.key === undefined && t.operator === 'Exists')))) continue;
    tolerations.push({ key, operator: 'Exists', effect: 'NoExecute', tolerationSeconds: 300 });
  }
  spec.tolerations = tolerations;
}

function hasResources(c: Json): { requests: boolean; limits: boolean; guaranteed: boolean } {
  const res = getMap(c, 'resources');
  const req = getMap(res, 'requests') ?? {};
  const lim = getMap(res, 'limits') ?? {};
  const guaranteed =
    lim.cpu !== undefined &&
    lim.memory !== undefined &&
    (req.cpu === undefined || req.cpu === lim.cpu) &&
    (req.memory === undefined || req.memory === lim.memory);
  return { requests: Object.keys(req).length > 0, limits: Object.keys(lim).length > 0, guaranteed };
}

export function qosClass(spec: JsonObject): string {
  const containers = [...(getArray(spec, 'containers') ?? []), ...(getArray(spec, 'initContainers') ?? [])];
  const r = containers.map(hasResources);
  if (r.every((x) => !x.requests && !x.limits)) return 'BestEffort';
  if (r.length > 0 && r.every((x) => x.guaranteed)) return 'Guaranteed';
  return 'Burstable';
}

export function defaultPodForCreate(pod: KubeObject): void {
  const spec = defaultPodSpec(getMap(pod, 'spec') ?? {});
  defaultTolerations(spec);
  pod.spec = spec;
  pod.status = { phase: 'Pending', qosClass: qosClass(spec) };
}

export function defaultServiceSpec(spec: JsonObject): JsonObject {
  const out: JsonObject = { ...spec };
  out.type ??= 'ClusterIP';
  out.sessionAffinity ??= 'None';
  const ports = getArray(out, 'ports');
  if (ports) {
    out.ports = ports.map((p) => (isObject(p) ? { protocol: 'TCP', ...p, targetPort: p.targetPort ?? p.port ?? null } : p));
  }
  if (out.type !== 'ExternalName') {
    out.internalTrafficPolicy ??= 'Cluster';
    out.ipFamilies ??= ['IPv4'];
    out.ipFamilyPolicy ??= 'SingleStack';
  }
  if (out.type === 'NodePort' || out.type === 'LoadBalancer') out.externalTrafficPolicy ??= 'Cluster';
  return out;
}

function defaultTemplate(spec: JsonObject): void {
  const template = getMap(spec, 'template');
  if (template) {
    const podSpec = getMap(template, 'spec');
    if (podSpec) template.spec = defaultPodSpec(podSpec);
  }
}

export function defaultDeploymentSpec(spec: JsonObject): JsonObject {
  const out: JsonObject = { ...spec };
  out.replicas ??= 1;
  out.revisionHistoryLimit ??= 10;
  out.progressDeadlineSeconds ??= 600;
  const strategy = getMap(out, 'strategy') ?? {};
  strategy.type ??= 'RollingUpdate';
  if (strategy.type === 'RollingUpdate') {
    const ru = getMap(strategy, 'rollingUpdate') ?? {};
    ru.maxSurge ??= '25%';
    ru.maxUnavailable ??= '25%';
    strategy.rollingUpdate = ru;
  }
  out.strategy = strategy;
  defaultTemplate(out);
  return out;
}

export function defaultReplicaSetSpec(spec: JsonObject): JsonObject {
  const out: JsonObject = { ...spec };
  out.replicas ??= 1;
  defaultTemplate(out);
  return out;
}

/** Secrets: `stringData` is write-only and folds into base64 `data`. */
export function foldStringData(secret: KubeObject): void {
  const stringData = getMap(secret, 'stringData');
  if (stringData) {
    const data = getMap(secret, 'data') ?? {};
    for (const [k, v] of Object.entries(stringData)) if (typeof v === 'string') data[k] = Buffer.from(v, 'utf8').toString('base64');
    secret.data = data;
    delete secret.stringData;
  }
  if (getString(secret, 'type') === undefined) secret.type = 'Opaque';
}
