/**
 * The kubeconfigs of the TLS bootstrap: the bootstrap kubeconfig is read
 * with agent/kube/kubeconfig.ts (file references resolved); the node kubeconfig the agent
 * writes names the bootstrap's cluster (server, CA) and the certificate
 * store's current pair as client-certificate and client-key, as the kubelet
 * does, so it stays valid across rotations.
 */
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import { stringify } from 'yaml';
import { loadKubeconfig as loadKubeconfigFile, type Kubeconfig } from '../kube/kubeconfig.js';

export interface ClusterInfo {
  server: string;
  /** PEM of the CA, when the kubeconfig names one. */
  caPem: string | undefined;
  insecureSkipTLSVerify: boolean;
  tlsServerName: string | undefined;
}

/** Reads a kubeconfig (KUBECONFIG_INVALID when it cannot be used, e.g. no current cluster). */
export function loadKubeconfig(path: string): Kubeconfig {
  return loadKubeconfigFile(path);
}

export async function clusterInfo(kc: Kubeconfig): Promise<ClusterInfo> {
  const c = kc.cluster;
  let caPem: string | undefined;
  if (c.caData) caPem = Buffer.from(c.caData, 'base64').toString('utf8');
  else if (c.caFile) caPem = await readFile(c.caFile, 'utf8');
  return { server: c.server, caPem, insecureSkipTLSVerify: c.skipTLSVerify, tlsServerName: c.tlsServerName };
}

/** The node kubeconfig text. Pure. */
export function renderNodeKubeconfig(cluster: ClusterInfo, clientPemPath: string): string {
  const doc = {
    apiVersion: 'v1',
    kind: 'Config',
    clusters: [
      {
        name: 'default-cluster',
        cluster: {
          server: cluster.server,
          ...(cluster.caPem !== undefined ? { 'certificate-authority-data': Buffer.from(cluster.caPem).toString('base64') } : {}),
          ...(cluster.insecureSkipTLSVerify ? { 'insecure-skip-tls-verify': true } : {}),
          ...(cluster.tlsServerName ? { 'tls-server-name': cluster.tlsServerName } : {}),
        },
      },
    ],
    contexts: [{ name: 'default-context', context: { cluster: 'default-cluster', namespace: 'default', user: 'default-auth' } }],
    'current-context': 'default-context',
    preferences: {},
    users: [{ name: 'default-auth', user: { 'client-certificate': clientPemPath, 'client-key': clientPemPath } }],
  };
  return stringify(doc);
}

export async function writeFileAtomic(path: string, text: string, mode = 0o600): Promise<void> {
  await mkdir(dirname(path), { recursive: true });
  const tmp = `${path}.tmp-${process.pid}`;
  await writeFile(tmp, text, { mode });
  await rename(tmp, path);
}
