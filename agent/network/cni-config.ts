/**
 * The pod network's CNI conflist: knode's own plugins, the way kube-flannel configures flannel's:
 * `knode-flannel` (reads the subnet file, delegates to knode-bridge + knode-host-local on the
 * node's subnet, default gateway via cni0, hairpin) and `knode-portmap` (hostPort). Pure render;
 * written atomically and only when its text changes (the runtime reloads on change).
 *
 * - host-local's store and knode-flannel's saved delegate configs live under the agent's root dir
 *   (not /var/lib/cni), so several lab nodes on one machine never share them.
 * - Loopback is the runtime's business (containerd runs the `loopback` plugin itself).
 */
import { join } from 'node:path';
import { writeFileIfChanged } from './files.js';

export const conflistName = '10-knode.conflist';
export const networkName = 'knode';

export interface ConflistInput {
  /** flannel's subnet file the knode-flannel plugin reads. */
  subnetFile: string;
  /** The agent's root dir: host-local's dataDir and knode-flannel's dataDir go below it. */
  rootDir: string;
}

/** The conflist text (stable: same input, same bytes). Pure. */
export function renderConflist(i: ConflistInput): string {
  const conf = {
    cniVersion: '1.0.0',
    name: networkName,
    plugins: [
      {
        type: 'knode-flannel',
        subnetFile: i.subnetFile,
        dataDir: join(i.rootDir, 'cni', 'flannel'),
        delegate: { hairpinMode: true, isDefaultGateway: true },
        ipam: { dataDir: join(i.rootDir, 'cni', 'networks') },
      },
      { type: 'knode-portmap', capabilities: { portMappings: true }, snat: true },
    ],
  };
  return JSON.stringify(conf, null, 2) + '\n';
}

/** Writes `<dir>/10-knode.conflist` atomically when its content differs; returns whether it wrote. */
export function writeConflistIfChanged(dir: string, content: string): Promise<boolean> {
  return writeFileIfChanged(join(dir, conflistName), content);
}
