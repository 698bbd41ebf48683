/**
 * Image references and pull policy, as the kubelet applies them before a pull:
 * the default policy (Always for `:latest` or no tag, IfNotPresent otherwise),
 * validation of the name (distribution/reference grammar; a bad one gives
 * InvalidImageName), and the docker-config credentials of imagePullSecrets
 * matched to the image's registry.
 */
import type { V1Container, V1Secret } from '@kubernetes/client-node';
import type { AuthConfig } from '../runtime/types.js';

export type PullPolicy = 'Always' | 'IfNotPresent' | 'Never';

// distribution/reference: domain, path components, tag, digest.
const alnum = '[a-z0-9]+';
const separator = '(?:[._]|__|[-]+)';
const pathComponent = `${alnum}(?:${separator}${alnum})*`;
const domainComponent = '(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])';
const ipv6 = '\\[(?:[a-fA-F0-9:]+)\\]';
const domain = `(?:${domainComponent}(?:\\.${domainComponent})*|${ipv6})(?::[0-9]+)?`;
const tag = '[\\w][\\w.-]{0,127}';
const digest = '[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*[:][0-9A-Fa-f]{32,}';
const referencePattern = new RegExp(`^((?:${domain}/)?${pathComponent}(?:/${pathComponent})*)(?::(${tag}))?(?:@(${digest}))?$`);

export interface ParsedImage {
  /** Repository as written (no default domain added). */
  repository: string;
  tag: string | undefined;
  digest: string | undefined;
  /** Registry host the image is pulled from (docker.io when none). */
  registry: string;
}

/** undefined when the name is not a valid reference. */
export function parseImageName(image: string): ParsedImage | undefined {
  const m = referencePattern.exec(image);
  if (m === null || m[1]!.length > 255) return undefined;
  const repository = m[1]!;
  const first = repository.split('/')[0]!;
  const hasDomain = repository.includes('/') && (first.includes('.') || first.includes(':') || first === 'localhost' || first !== first.toLowerCase());
  return { repository, tag: m[2], digest: m[3], registry: hasDomain ? first : 'docker.io' };
}

/** upstream's InvalidImageName message. */
export function invalidImageMessage(image: string): string {
  return `Failed to apply default image tag "${image}": couldn't parse image name "${image}": invalid reference format`;
}

export function defaultPullPolicy(image: string): PullPolicy {
  const parsed = parseImageName(image);
  if (parsed === undefined) return 'IfNotPresent';
  if (parsed.digest !== undefined) return 'IfNotPresent';
  return parsed.tag === undefined || parsed.tag === 'latest' ? 'Always' : 'IfNotPresent';
}

export function pullPolicy(container: V1Container): PullPolicy {
  const p = container.imagePullPolicy;
  return p === 'Always' || p === 'IfNotPresent' || p === 'Never' ? p : defaultPullPolicy(container.image ?? '');
}

/** The registry key of a docker config (`https://index.docker.io/v1/`, `host:port`, `https://host/v2/`) as a host. */
function registryHost(key: string): string {
  const host = key.replace(/^https?:\/\//, '').split('/')[0]!;
  return host === 'index.docker.io' || host === 'registry-1.docker.io' ? 'docker.io' : host;
}

interface DockerConfigEntry {
  username?: string;
  password?: string;
  auth?: string;
  identitytoken?: string;
  registrytoken?: string;
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Credentials for `image` from kubernetes.io/dockerconfigjson (or legacy dockercfg) secrets, in order. */
export function credentialsFromSecrets(image: string, secrets: V1Secret[]): AuthConfig[] {
  const parsed = parseImageName(image);
  if (parsed === undefined) return [];
  const out: AuthConfig[] = [];
  for (const s of secrets) {
    const raw = s.data?.['.dockerconfigjson'] ?? s.data?.['.dockercfg'];
    if (raw === undefined) continue;
    let doc: unknown;
    try {
      doc = JSON.parse(Buffer.from(raw, 'base64').toString('utf8'));
    } catch {
      continue;
    }
    const auths = isRecord(doc) && isRecord(doc.auths) ? doc.auths : doc;
    if (!isRecord(auths)) continue;
    for (const [key, value] of Object.entries(auths)) {
      if (!isRecord(value) || registryHost(key) !== parsed.registry) continue;
      const e = value as DockerConfigEntry;
      // No serverAddress: the registry is matched here already, and containerd 1.6 drops the
      // credentials when serverAddress does not parse as a URL whose host is the registry's.
      const auth: AuthConfig = {};
      if (e.username !== undefined) auth.username = e.username;
      if (e.password !== undefined) auth.password = e.password;
      if (e.auth !== undefined) auth.auth = e.auth;
      if (e.identitytoken !== undefined) auth.identityToken = e.identitytoken;
      if (e.registrytoken !== undefined) auth.registryToken = e.registrytoken;
      out.push(auth);
    }
  }
  return out;
}
