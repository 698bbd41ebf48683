/**
 * Authentication and authorization for the lab apiserver.
 *
 * Authentication: a client certificate signed by the lab CA (CN = user,
 * O = groups), or a bearer token from the static token file (upstream CSV
 * format: token,user,uid,"group1,group2"). Anonymous requests are refused
 * except for health and version.
 *
 * Authorization (simple lab rules, not RBAC): system:masters may do
 * everything; nodes (system:nodes, user system:node:<name>) may do what a
 * kubelet needs (read the cluster's objects, write their own Node and Lease,
 * pod status, events, reviews, CSRs for their own client certificate);
 * system:node-proxier what kube-proxy needs; system:bootstrappers (bootstrap
 * tokens, bootstrap-tokens.ts) what kubeadm grants them: CSRs;
 * every authenticated user may read discovery.
 */
import { KnodeError } from '../../lib/errors.js';

export interface User {
  name: string;
  uid?: string;
  groups: string[];
  /** Extra attributes (service-account tokens: the bound pod, the credential id). */
  extra?: Record<string, string[]>;
}

export interface Attributes {
  verb: string;
  /** Resource requests: group, resource, subresource, namespace, name. */
  resourceRequest: boolean;
  group?: string;
  resource?: string;
  subresource?: string;
  namespace?: string;
  name?: string;
  /** Non-resource requests. */
  path?: string;
}

export interface Decision {
  allowed: boolean;
  reason: string;
}

/** Splits one CSV line with double-quoted fields. */
function csvFields(line: string): string[] {
  const out: string[] = [];
  let cur = '';
  let quoted = false;
  for (let i = 0; i < line.length; i++) {
    const ch = line[i]!;
    if (quoted) {
      if (ch === '"' && line[i + 1] === '"') {
        cur += '"';
        i++;
      } else if (ch === '"') quoted = false;
      else cur += ch;
    } else if (ch === '"') quoted = true;
    else if (ch === ',') {
      out.push(cur);
      cur = '';
    } else cur += ch;
  }
  out.push(cur);
  return out.map((s) => s.trim());
}

export function parseTokenFile(text: string): Map<string, User> {
  const tokens = new Map<string, User>();
  text.split('\n').forEach((raw, i) => {
    const line = raw.trim();
    if (!line || line.startsWith('#')) return;
    const [token, name, uid, groups] = csvFields(line);
    if (!token || !name) throw new KnodeError('TOKEN_FILE_INVALID', `token file line ${i + 1}: need at least token,user`);
    tokens.set(token, {
      name,
      ...(uid ? { uid } : {}),
      groups: (groups ?? '')
        .split(',')
        .map((g) => g.trim())
        .filter(Boolean),
    });
  });
  return tokens;
}

export function withAuthenticated(user: User): User {
  return user.groups.includes('system:authenticated') ? user : { ...user, groups: [...user.groups, 'system:authenticated'] };
}

export function userFromCertSubject(subject: { CN?: string | string[]; O?: string | string[] } | undefined): User | undefined {
  if (!subject) return undefined;
  const cn = Array.isArray(subject.CN) ? subject.CN[0] : subject.CN;
  if (!cn) return undefined;
  const o = subject.O === undefined ? [] : Array.isArray(subject.O) ? subject.O : [subject.O];
  return withAuthenticated({ name: cn, groups: o });
}

export function bearerToken(header: string | undefined): string | undefined {
  const m = header?.match(/^Bearer\s+(\S+)\s*$/i);
  return m ? m[1] : undefined;
}

const readVerbs = ['get', 'list', 'watch'];
const writeVerbs = ['create', 'update', 'patch'];

const nodeReadable = new Set([
  'nodes',
  'pods',
  'services',
  'endpoints',
  'endpointslices',
  'namespaces',
  'configmaps',
  'secrets',
  'serviceaccounts',
  'persistentvolumes',
  'persistentvolumeclaims',
  'leases',
  'events',
  'runtimeclasses',
  'csidrivers',
  'csinodes',
]);

function nodeName(user: User): string | undefined {
  if (!user.groups.includes('system:nodes') || !user.name.startsWith('system:node:')) return undefined;
  return user.name.slice('system:node:'.length);
}

function allowNode(node: string, a: Attributes): boolean {
  const r = a.resource ?? '';
  const sub = a.subresource ?? '';
  if (readVerbs.includes(a.verb) && !sub && nodeReadable.has(r)) return true;
  switch (r) {
    case 'nodes':
      if (a.verb === 'create') return a.name === undefined || a.name === node;
      return (writeVerbs.includes(a.verb) || a.verb === 'delete' || a.verb === 'get') && a.name === node && (sub === '' || sub === 'status');
    case 'pods':
      if (sub === 'status') return ['get', 'update', 'patch'].includes(a.verb);
      if (sub === 'eviction') return a.verb === 'create';
      return sub === '' && (a.verb === 'create' || a.verb === 'delete');
    case 'events':
      return writeVerbs.includes(a.verb);
    case 'leases':
      return a.namespace === 'kube-node-lease' && (a.verb === 'create' || a.name === node) && [...writeVerbs, 'get', 'delete'].includes(a.verb);
    case 'tokenreviews':
    case 'subjectaccessreviews':
      return a.verb === 'create';
    case 'selfsubjectreviews':
    case 'selfsubjectaccessreviews':
      return a.verb === 'create';
    case 'serviceaccounts':
      return sub === 'token' && a.verb === 'create';
    case 'certificatesigningrequests':
      // system:node (its own client certificate rotation) and
      // system:certificates.k8s.io:certificatesigningrequests:selfnodeclient.
      if (sub === 'selfnodeclient') return a.verb === 'create';
      return sub === '' && ['create', ...readVerbs].includes(a.verb);
    default:
      return false;
  }
}

/**
 * system:bootstrappers (kubeadm's bindings): system:node-bootstrapper (create,
 * get, list, watch CSRs) and ...:certificatesigningrequests:nodeclient (the
 * approver's check that the requester may ask for a node client certificate).
 */
function allowBootstrapper(a: Attributes): boolean {
  if (a.group !== 'certificates.k8s.io' || a.resource !== 'certificatesigningrequests') return false;
  if (a.subresource === 'nodeclient') return a.verb === 'create';
  return !a.subresource && ['create', ...readVerbs].includes(a.verb);
}

function allowProxier(a: Attributes): boolean {
  const r = a.resource ?? '';
  if (readVerbs.includes(a.verb) && !a.subresource && ['services', 'endpoints', 'endpointslices', 'nodes'].includes(r)) return true;
  return r === 'events' && writeVerbs.includes(a.verb);
}

const discoveryPaths = [/^\/api(\/.*)?$/, /^\/apis(\/.*)?$/, /^\/version\/?$/, /^\/(healthz|livez|readyz)(\/.*)?$/, /^\/openapi(\/.*)?$/];

export function authorize(user: User, a: Attributes): Decision {
  if (user.groups.includes('system:masters')) return { allowed: true, reason: 'system:masters' };
  if (!a.resourceRequest) {
    const ok = user.groups.includes('system:authenticated') && a.verb === 'get' && discoveryPaths.some((re) => re.test(a.path ?? ''));
    return ok ? { allowed: true, reason: 'discovery' } : { allowed: false, reason: '' };
  }
  // Everyone may ask who they are and what they may do (upstream's basic-user role).
  if ((a.resource === 'selfsubjectreviews' || a.resource === 'selfsubjectaccessreviews') && a.verb === 'create') {
    return { allowed: true, reason: 'basic-user' };
  }
  const node = nodeName(user);
  if (node !== undefined && allowNode(node, a)) return { allowed: true, reason: `node ${node}` };
  if (user.groups.includes('system:node-proxier') && allowProxier(a)) return { allowed: true, reason: 'node-proxier' };
  if (user.groups.includes('system:bootstrappers') && allowBootstrapper(a)) return { allowed: true, reason: 'node-bootstrapper' };
  return { allowed: false, reason: '' };
}

/** The message of a 403, as upstream words it. */
export function forbiddenMessage(user: User, a: Attributes): string {
  if (!a.resourceRequest) return `forbidden: User "${user.name}" cannot ${a.verb} path "${a.path ?? ''}"`;
  const res = a.subresource ? `${a.resource ?? ''}/${a.subresource}` : (a.resource ?? '');
  const where = a.namespace ? ` in the namespace "${a.namespace}"` : ' at the cluster scope';
  const what = a.name ? `${res} "${a.name}"` : res;
  return `${what} is forbidden: User "${user.name}" cannot ${a.verb} resource "${res}" in API group "${a.group ?? ''}"${where}`;
}
