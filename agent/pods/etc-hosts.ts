/**
 * The kubelet-managed /etc/hosts of a pod (upstream makeHostsMount /
 * managedHostsFileContent): localhost entries, the pod's IPs with its
 * hostname (FQDN first when spec.subdomain is set), then spec.hostAliases.
 * Mounted into every container of a pod that is not on the host network,
 * unless the container mounts /etc/hosts itself.
 */
import type { V1Container, V1Pod } from '@kubernetes/client-node';
import { podHostname } from './config.js';

export function renderEtcHosts(pod: V1Pod, podIPs: string[], clusterDomain: string): string {
  const lines = [
    '# Kubernetes-managed hosts file.',
    '127.0.0.1\tlocalhost',
    '::1\tlocalhost ip6-localhost ip6-loopback',
    'fe00::0\tip6-localnet',
    'fe00::0\tip6-mcastprefix',
    'fe00::1\tip6-allnodes',
    'fe00::2\tip6-allrouters',
  ];
  const hostname = podHostname(pod) ?? '';
  const subdomain = pod.spec?.subdomain;
  for (const ip of podIPs) {
    if (subdomain !== undefined && subdomain !== '') {
      lines.push(`${ip}\t${hostname}.${subdomain}.${pod.metadata?.namespace ?? 'default'}.svc.${clusterDomain}\t${hostname}`);
    } else {
      lines.push(`${ip}\t${hostname}`);
    }
  }
  const aliases = pod.spec?.hostAliases ?? [];
  if (aliases.length > 0) {
    lines.push('', '# Entries added by HostAliases.');
    for (const a of aliases) lines.push(`${a.ip}\t${(a.hostnames ?? []).join('\t')}`);
  }
  return lines.join('\n') + '\n';
}

/** Whether the container gets the managed file (not on the host network, not mounting /etc/hosts itself). */
export function wantsManagedEtcHosts(pod: V1Pod, container: V1Container, podIPs: string[]): boolean {
  if (pod.spec?.hostNetwork === true || podIPs.length === 0) return false;
  return !(container.volumeMounts ?? []).some((m) => m.mountPath === '/etc/hosts');
}
