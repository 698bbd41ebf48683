/**
 * A small kubeconfig loader (the agent's replacement for client-node's
 * KubeConfig, whose module graph costs tens of MB of heap).
 *
 * Design notes:
 * - `parseKubeconfig` is pure: YAML text + the file's directory → the current
 *   context's cluster and user, with relative file references
 *   (certificate-authority, client-certificate, client-key, tokenFile)
 *   resolved against that directory, as kubectl and client-go do.
 * - Field names follow client-node's Cluster/User (server, caData, caFile,
 *   skipTLSVerify, tlsServerName; certData, certFile, keyData, keyFile, token,
 *   tokenFile, username, password) so callers read them the same way.
 * - Only static credentials: client certificates, bearer tokens (inline or a
 *   file, re-read by the transport), basic auth. `exec` and `auth-provider`
 *   users are refused with a clear error: a kubelet is never configured so.
 * - Files are not read here (only named): the transport reads them, and re-reads
 *   them when they change (client certificate rotation).
 */
import { readFileSync } from 'node:fs';
import { dirname, isAbsolute, resolve } from 'node:path';
import { parse as parseYaml } from 'yaml';
import { KnodeError, errorMessage } from '../../lib/errors.js';

export interface KubeconfigCluster {
  name: string;
  server: string;
  /** base64 PEM (certificate-authority-data). */
  caData?: string;
  caFile?: string;
  skipTLSVerify: boolean;
  tlsServerName?: string;
}

export interface KubeconfigUser {
  name: string;
  token?: string;
  tokenFile?: string;
  /** base64 PEM (client-certificate-data / client-key-data). */
  certData?: string;
  certFile?: string;
  keyData?: string;
  keyFile?: string;
  username?: string;
  password?: string;
}

export interface Kubeconfig {
  /** The file it came from, when loaded from one. */
  path?: string;
  currentContext: string;
  cluster: KubeconfigCluster;
  user: KubeconfigUser;
  /** The context's namespace, if any. */
  namespace?: string;
}

type Obj = Record<string, unknown>;

const invalid = (why: string): KnodeError => new KnodeError('KUBECONFIG_INVALID', why);

function isObj(v: unknown): v is Obj {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function str(o: Obj, key: string, where: string): string | undefined {
  const v = o[key];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'string') throw invalid(`${where}: ${key} must be a string`);
  return v;
}

/** Finds `name` in a list of `{name, <field>: {...}}` entries. */
function named(doc: Obj, list: string, field: string, name: string): Obj {
  const entries = doc[list] ?? [];
  if (!Array.isArray(entries)) throw invalid(`${list} must be a list`);
  for (const e of entries) {
    if (isObj(e) && e.name === name) {
      const inner = e[field] ?? {};
      if (!isObj(inner)) throw invalid(`${list} entry ${name}: ${field} must be a map`);
      return inner;
    }
  }
  throw invalid(`${list} has no entry named ${JSON.stringify(name)}`);
}

/** Parses kubeconfig YAML; relative paths resolve against `baseDir`. Pure. */
export function parseKubeconfig(text: string, baseDir: string, contextName?: string): Kubeconfig {
  let doc: unknown;
  try {
    doc = parseYaml(text);
  } catch (err) {
    throw invalid(`not YAML: ${errorMessage(err)}`);
  }
  if (!isObj(doc)) throw invalid('not a kubeconfig (expected a map)');
  const currentContext = contextName ?? str(doc, 'current-context', 'kubeconfig');
  if (!currentContext) throw invalid('kubeconfig has no current-context');
  const context = named(doc, 'contexts', 'context', currentContext);
  const clusterName = str(context, 'cluster', `context ${currentContext}`);
  const userName = str(context, 'user', `context ${currentContext}`);
  if (!clusterName) throw invalid(`context ${currentContext} names no cluster`);
  const file = (p: string | undefined): string | undefined => (p === undefined || p === '' ? undefined : isAbsolute(p) ? p : resolve(baseDir, p));

  const c = named(doc, 'clusters', 'cluster', clusterName);
  const where = `cluster ${clusterName}`;
  const server = str(c, 'server', where);
  if (!server) throw invalid(`${where} has no server`);
  try {
    const u = new URL(server);
    if (u.protocol !== 'https:' && u.protocol !== 'http:') throw new Error(`scheme ${u.protocol}`);
  } catch (err) {
    throw invalid(`${where}: bad server URL ${server}: ${errorMessage(err)}`);
  }
  const skip = c['insecure-skip-tls-verify'];
  const cluster: KubeconfigCluster = {
    name: clusterName,
    server: server.replace(/\/+$/, ''),
    skipTLSVerify: skip === true || skip === 'true',
  };
  const caData = str(c, 'certificate-authority-data', where);
  const caFile = file(str(c, 'certificate-authority', where));
  const tlsServerName = str(c, 'tls-server-name', where);
  if (caData) cluster.caData = caData;
  if (caFile) cluster.caFile = caFile;
  if (tlsServerName) cluster.tlsServerName = tlsServerName;

  const user: KubeconfigUser = { name: userName ?? '' };
  if (userName) {
    const u = named(doc, 'users', 'user', userName);
    const uw = `user ${userName}`;
    if (u.exec !== undefined && u.exec !== null) throw invalid(`${uw}: exec credential plugins are not supported by knode-agent`);
    if (u['auth-provider'] !== undefined && u['auth-provider'] !== null) throw invalid(`${uw}: auth-provider is not supported by knode-agent`);
    const set = <K extends keyof KubeconfigUser>(k: K, v: KubeconfigUser[K] | undefined): void => {
      if (v !== undefined && v !== '') user[k] = v;
    };
    set('token', str(u, 'token', uw));
    set('tokenFile', file(str(u, 'tokenFile', uw)));
    set('certData', str(u, 'client-certificate-data', uw));
    set('certFile', file(str(u, 'client-certificate', uw)));
    set('keyData', str(u, 'client-key-data', uw));
    set('keyFile', file(str(u, 'client-key', uw)));
    set('username', str(u, 'username', uw));
    set('password', str(u, 'password', uw));
  }
  const namespace = str(context, 'namespace', `context ${currentContext}`);
  return { currentContext, cluster, user, ...(namespace ? { namespace } : {}) };
}

/** Reads and parses a kubeconfig file (KUBECONFIG_INVALID when it cannot be used). */
export function loadKubeconfig(path: string): Kubeconfig {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new KnodeError('KUBECONFIG_INVALID', `cannot load kubeconfig ${path}: ${errorMessage(err)}`, { cause: err });
  }
  try {
    return { ...parseKubeconfig(text, dirname(resolve(path))), path };
  } catch (err) {
    throw new KnodeError('KUBECONFIG_INVALID', `cannot load kubeconfig ${path}: ${errorMessage(err)}`, { cause: err });
  }
}
