/**
 * Kubeconfig files for the lab: one cluster (the apiserver URL + CA) and one
 * user with embedded client certificate and key.
 */
import { writeFile } from 'node:fs/promises';
import { stringify } from 'yaml';

export interface KubeconfigSpec {
  server: string;
  caPem: string;
  user: string;
  certPem: string;
  keyPem: string;
  clusterName?: string;
}

const b64 = (s: string): string => Buffer.from(s, 'utf8').toString('base64');

export function renderKubeconfig(spec: KubeconfigSpec): string {
  const cluster = spec.clusterName ?? 'knode-lab';
  return stringify({
    apiVersion: 'v1',
    kind: 'Config',
    clusters: [{ name: cluster, cluster: { server: spec.server, 'certificate-authority-data': b64(spec.caPem) } }],
    users: [{ name: spec.user, user: { 'client-certificate-data': b64(spec.certPem), 'client-key-data': b64(spec.keyPem) } }],
    contexts: [{ name: `${spec.user}@${cluster}`, context: { cluster, user: spec.user } }],
    'current-context': `${spec.user}@${cluster}`,
    preferences: {},
  });
}

export async function writeKubeconfig(path: string, spec: KubeconfigSpec): Promise<void> {
  await writeFile(path, renderKubeconfig(spec), { mode: 0o600 });
}
