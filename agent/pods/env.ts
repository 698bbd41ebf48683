/**
 * A container's environment as upstream's makeEnvironmentVariables:
 * envFrom (configMaps/secrets, optional prefix; keys that are not valid names
 * are skipped), then env (literal values with `$(VAR)` expansion against what
 * came before and the service variables; valueFrom fieldRef, resourceFieldRef,
 * configMapKeyRef, secretKeyRef), then the Docker-link style service variables
 * of the pod's namespace (plus the master `kubernetes` service of `default`)
 * for names not already set.
 *
 * A missing configMap/secret or key that is not optional is an error with
 * upstream's wording; the worker turns it into CreateContainerConfigError.
 */
import type { V1Container, V1Pod, V1Service } from '@kubernetes/client-node';
import { KnodeError } from '../../lib/errors.js';
import { expand, mappingFor } from './expansion.js';
import { parseQuantity, quantityDivideCeil, type Quantity } from './quantity.js';
import type { ObjectLookup } from './types.js';

export interface EnvContext {
  hostIPs: string[];
  podIPs: string[];
  /** Node allocatable, the default for unset limits in resourceFieldRef. */
  nodeAllocatable: { cpu: string; memory: string; 'ephemeral-storage'?: string };
  lookup: ObjectLookup;
}

export interface EnvVar {
  name: string;
  value: string;
}

export function configError(message: string): KnodeError {
  return new KnodeError('CREATE_CONTAINER_CONFIG', message);
}

const envVarName = /^[-._a-zA-Z][-._a-zA-Z0-9]*$/;

function envName(s: string): string {
  return s.replaceAll('-', '_').toUpperCase();
}

function isServiceIPSet(svc: V1Service): boolean {
  const ip = svc.spec?.clusterIP;
  return ip !== undefined && ip !== '' && ip !== 'None';
}

function joinHostPort(host: string, port: number): string {
  return host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
}

/** upstream envvars.FromServices */
export function serviceEnvVars(services: V1Service[]): EnvVar[] {
  const out: EnvVar[] = [];
  for (const svc of services) {
    if (!isServiceIPSet(svc)) continue;
    const ip = svc.spec!.clusterIP!;
    const ports = svc.spec?.ports ?? [];
    const prefix = envName(svc.metadata?.name ?? '');
    out.push({ name: `${prefix}_SERVICE_HOST`, value: ip });
    if (ports[0] !== undefined) out.push({ name: `${prefix}_SERVICE_PORT`, value: String(ports[0].port) });
    for (const p of ports) if (p.name !== undefined && p.name !== '') out.push({ name: `${prefix}_SERVICE_PORT_${envName(p.name)}`, value: String(p.port) });
    ports.forEach((p, i) => {
      const proto = p.protocol !== undefined && p.protocol !== '' ? p.protocol : 'TCP';
      const url = `${proto.toLowerCase()}://${joinHostPort(ip, p.port)}`;
      if (i === 0) out.push({ name: `${prefix}_PORT`, value: url });
      const pp = `${prefix}_PORT_${p.port}_${proto.toUpperCase()}`;
      out.push({ name: pp, value: url }, { name: `${pp}_PROTO`, value: proto.toLowerCase() }, { name: `${pp}_PORT`, value: String(p.port) }, { name: `${pp}_ADDR`, value: ip });
    });
  }
  return out;
}

/** The services whose variables a pod gets: its namespace's (if enableServiceLinks) and `default/kubernetes`. */
export function servicesForPod(pod: V1Pod, services: V1Service[]): V1Service[] {
  const ns = pod.metadata?.namespace ?? 'default';
  const links = pod.spec?.enableServiceLinks !== false;
  const byName = new Map<string, V1Service>();
  for (const svc of services) {
    if (!isServiceIPSet(svc)) continue;
    const name = svc.metadata?.name ?? '';
    const svcNs = svc.metadata?.namespace ?? 'default';
    if (svcNs === 'default' && name === 'kubernetes') {
      if (!byName.has(name)) byName.set(name, svc);
    } else if (svcNs === ns && links) {
      byName.set(name, svc);
    }
  }
  return [...byName.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([, s]) => s);
}

/** Value of `metadata.labels['k']` style paths. */
function subscript(path: string, prefix: string): string | undefined {
  if (!path.startsWith(prefix + '[') || !path.endsWith(']')) return undefined;
  const inner = path.slice(prefix.length + 1, -1);
  const m = /^'(.*)'$|^"(.*)"$/.exec(inner);
  return m === null ? undefined : (m[1] ?? m[2]);
}

function formatMap(m: Record<string, string> | undefined): string {
  return Object.keys(m ?? {})
    .sort()
    .map((k) => `${k}=${JSON.stringify(m![k])}`)
    .join('\n');
}

/** upstream podFieldSelectorRuntimeValue + fieldpath.ExtractFieldPathAsString. */
export function podFieldValue(pod: V1Pod, fieldPath: string, ctx: Pick<EnvContext, 'hostIPs' | 'podIPs'>): string {
  const md = pod.metadata ?? {};
  switch (fieldPath) {
    case 'metadata.name':
      return md.name ?? '';
    case 'metadata.namespace':
      return md.namespace ?? 'default';
    case 'metadata.uid':
      return md.uid ?? '';
    case 'metadata.labels':
      return formatMap(md.labels);
    case 'metadata.annotations':
      return formatMap(md.annotations);
    case 'spec.nodeName':
      return pod.spec?.nodeName ?? '';
    case 'spec.serviceAccountName':
      return pod.spec?.serviceAccountName ?? '';
    case 'status.hostIP':
      return ctx.hostIPs[0] ?? '';
    case 'status.hostIPs':
      return ctx.hostIPs.join(',');
    case 'status.podIP':
      return ctx.podIPs[0] ?? '';
    case 'status.podIPs':
      return ctx.podIPs.join(',');
  }
  const label = subscript(fieldPath, 'metadata.labels');
  if (label !== undefined) return md.labels?.[label] ?? '';
  const annotation = subscript(fieldPath, 'metadata.annotations');
  if (annotation !== undefined) return md.annotations?.[annotation] ?? '';
  throw configError(`unsupported fieldPath: ${fieldPath}`);
}

/** upstream ExtractContainerResourceValue (limits default to the node's allocatable). */
export function containerResourceValue(
  container: V1Container,
  resource: string,
  divisorText: string | undefined,
  nodeAllocatable: EnvContext['nodeAllocatable'],
): string {
  const divisor: Quantity = parseQuantity(divisorText === undefined || divisorText === '' ? '1' : divisorText);
  const [kind, name] = resource.split('.') as [string, string | undefined];
  if ((kind !== 'limits' && kind !== 'requests') || (name !== 'cpu' && name !== 'memory' && name !== 'ephemeral-storage')) {
    throw configError(`unsupported container resource: ${resource}`);
  }
  const limits = container.resources?.limits ?? {};
  const requests = container.resources?.requests ?? {};
  let text: string | undefined;
  if (kind === 'limits') text = limits[name] ?? nodeAllocatable[name];
  else text = requests[name] ?? limits[name] ?? '0';
  // ceil(value / divisor), exactly (upstream: ceil(milli/milli) for cpu, ceil(bytes/bytes) for memory).
  return String(quantityDivideCeil(parseQuantity(text ?? '0'), divisor));
}

function decodeSecret(value: string | undefined): string | undefined {
  return value === undefined ? undefined : Buffer.from(value, 'base64').toString('utf8');
}

export async function makeEnvironment(pod: V1Pod, container: V1Container, ctx: EnvContext): Promise<EnvVar[]> {
  const ns = pod.metadata?.namespace ?? 'default';
  const serviceEnv = new Map<string, string>();
  for (const v of serviceEnvVars(servicesForPod(pod, await ctx.lookup.listServices()))) serviceEnv.set(v.name, v.value);
  const env = new Map<string, string>();
  const mapping = mappingFor(env, serviceEnv);

  for (const from of container.envFrom ?? []) {
    const prefix = from.prefix ?? '';
    if (from.configMapRef !== undefined) {
      const name = from.configMapRef.name ?? '';
      const cm = await ctx.lookup.getConfigMap(ns, name);
      if (cm === undefined) {
        if (from.configMapRef.optional === true) continue;
        throw configError(`configmap "${name}" not found`);
      }
      for (const [k, v] of Object.entries(cm.data ?? {})) if (envVarName.test(prefix + k)) env.set(prefix + k, v);
    } else if (from.secretRef !== undefined) {
      const name = from.secretRef.name ?? '';
      const secret = await ctx.lookup.getSecret(ns, name);
      if (secret === undefined) {
        if (from.secretRef.optional === true) continue;
        throw configError(`secret "${name}" not found`);
      }
      for (const [k, v] of Object.entries(secret.data ?? {})) if (envVarName.test(prefix + k)) env.set(prefix + k, decodeSecret(v) ?? '');
    }
  }

  for (const ev of container.env ?? []) {
    let value = ev.value ?? '';
    if (value !== '') {
      value = expand(value, mapping);
    } else if (ev.valueFrom !== undefined) {
      const vf = ev.valueFrom;
      if (vf.fieldRef !== undefined) {
        value = podFieldValue(pod, vf.fieldRef.fieldPath, ctx);
      } else if (vf.resourceFieldRef !== undefined) {
        const target = vf.resourceFieldRef.containerName;
        const c =
          target === undefined || target === ''
            ? container
            : [...(pod.spec?.containers ?? []), ...(pod.spec?.initContainers ?? [])].find((x) => x.name === target);
        if (c === undefined) throw configError(`container ${target ?? ''} not found in pod`);
        value = containerResourceValue(c, vf.resourceFieldRef.resource, vf.resourceFieldRef.divisor === undefined ? undefined : String(vf.resourceFieldRef.divisor), ctx.nodeAllocatable);
      } else if (vf.configMapKeyRef !== undefined) {
        const { name = '', key, optional } = vf.configMapKeyRef;
        const cm = await ctx.lookup.getConfigMap(ns, name);
        if (cm === undefined) {
          if (optional === true) continue;
          throw configError(`configmap "${name}" not found`);
        }
        const v = cm.data?.[key];
        if (v === undefined) {
          if (optional === true) continue;
          throw configError(`couldn't find key ${key} in ConfigMap ${ns}/${name}`);
        }
        value = v;
      } else if (vf.secretKeyRef !== undefined) {
        const { name = '', key, optional } = vf.secretKeyRef;
        const secret = await ctx.lookup.getSecret(ns, name);
        if (secret === undefined) {
          if (optional === true) continue;
          throw configError(`secret "${name}" not found`);
        }
        const v = decodeSecret(secret.data?.[key]);
        if (v === undefined) {
          if (optional === true) continue;
          throw configError(`couldn't find key ${key} in Secret ${ns}/${name}`);
        }
        value = v;
      }
    }
    env.set(ev.name, value);
  }

  const out: EnvVar[] = [...env].map(([name, value]) => ({ name, value }));
  for (const [name, value] of serviceEnv) if (!env.has(name)) out.push({ name, value });
  return out;
}

/** command/args with `$(VAR)` expanded against the container's environment (upstream ExpandContainerCommandAndArgs). */
export function expandCommandAndArgs(container: V1Container, env: EnvVar[]): { command: string[] | undefined; args: string[] | undefined } {
  const mapping = mappingFor(new Map(env.map((e) => [e.name, e.value])));
  return {
    command: container.command?.map((c) => expand(c, mapping)),
    args: container.args?.map((a) => expand(a, mapping)),
  };
}
