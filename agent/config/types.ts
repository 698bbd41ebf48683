/**
 * The agent's resolved configuration: flags over the config file over defaults.
 * Durations are milliseconds, sizes are numbers; everything is validated.
 */
import type { LogLevel } from '../../lib/log.js';
import type { OverlayBackendName } from '../network/overlay/names.js';

export type TaintEffect = 'NoSchedule' | 'PreferNoSchedule' | 'NoExecute';

export interface Taint {
  key: string;
  value?: string;
  effect: TaintEffect;
}

export interface AgentConfig {
  /** Path of the kubeconfig; undefined = standalone (no apiserver). */
  kubeconfig: string | undefined;
  /** --bootstrap-kubeconfig: credentials for the TLS bootstrap when --kubeconfig is missing or its certificate expired (agent/bootstrap). */
  bootstrapKubeconfig: string | undefined;
  /** --rotate-certificates (file: rotateCertificates): renew the client certificate before it expires; default true. */
  rotateCertificates: boolean;
  /** The config file the values came from, if any. */
  configFile: string | undefined;
  /** The Node's name: --hostname-override, else the machine's hostname, lower-cased. */
  nodeName: string;
  hostnameOverride: string | undefined;
  /** --node-ip (one address per family at most). */
  nodeIPs: string[];
  /** unix:///path/to.sock */
  containerRuntimeEndpoint: string;
  /**
   * --container-runtime: 'cri' (containerd's CRI) or 'docker' (dockerd, driven
   * by the agent); without the flag, an endpoint ending in docker.sock means docker.
   */
  containerRuntime: 'cri' | 'docker';
  /** --pod-infra-container-image: the pause image of docker sandboxes. */
  podInfraContainerImage: string;
  /** --cni-bin-dir: CNI plugins, for runtimes the agent runs CNI for (docker). */
  cniBinDir: string;
  podManifestPath: string | undefined;
  rootDir: string;
  clusterDNS: string[];
  clusterDomain: string;
  nodeLabels: Record<string, string>;
  registerWithTaints: Taint[];
  registerNode: boolean;
  maxPods: number;
  /** How often the node status is computed (nodeStatusUpdateFrequency, 10 s). */
  nodeStatusUpdateFrequencyMs: number;
  /** Status is written at least this often even when unchanged (nodeStatusReportFrequency, 5 min). */
  nodeStatusReportFrequencyMs: number;
  /** Lease duration (nodeLeaseDurationSeconds, 40); renewed every quarter of it. */
  nodeLeaseDurationSeconds: number;
  logLevel: LogLevel;
  /** --cgroup-root: cgroup parent of the pods (cgroupfs path); undefined = the runtime's default. */
  cgroupRoot: string | undefined;
  /** --cni-conf-dir: where the agent writes the pod network's CNI config (the runtime's conf_dir). */
  cniConfDir: string;
  /** --pod-logs-dir (KubeletConfiguration podLogsDir): root of the pods' log dirs. */
  podLogsDir: string;
  /** --overlay-backend (file: overlayBackend): the pod network between nodes (agent/network). */
  overlayBackend: OverlayBackendName;
  /** --cluster-cidr (file: clusterCIDR): the cluster's pod network (FLANNEL_NETWORK). */
  clusterCIDR: string;
  /** --flannel-subnet-file (file: flannelSubnetFile): where flannel's subnet.env is written. */
  flannelSubnetFile: string;
  /** The kubelet server (agent/server): --address/--port (HTTPS), --healthz-bind-address/--healthz-port (HTTP); port 0 = off. */
  address: string;
  port: number;
  healthzBindAddress: string;
  healthzPort: number;
  /** --tls-cert-file/--tls-private-key-file: the serving certificate; unset = self-signed, made at start in <root-dir>/pki. */
  tlsCertFile: string | undefined;
  tlsPrivateKeyFile: string | undefined;
  /** --client-ca-file: client certificates signed by this CA authenticate (unset: bearer tokens only). */
  clientCAFile: string | undefined;
}

export const defaultConfig = {
  containerRuntimeEndpoint: 'unix:///run/containerd/containerd.sock',
  dockerEndpoint: 'unix:///var/run/docker.sock',
  podInfraContainerImage: 'registry.k8s.io/pause:3.9',
  cniBinDir: '/opt/cni/bin',
  rootDir: '/var/lib/knode',
  clusterDomain: 'cluster.local',
  maxPods: 110,
  nodeStatusUpdateFrequencyMs: 10_000,
  nodeStatusReportFrequencyMs: 5 * 60_000,
  nodeLeaseDurationSeconds: 40,
  registerNode: true,
  rotateCertificates: true,
  logLevel: 'info',
  cniConfDir: '/etc/cni/net.d',
  podLogsDir: '/var/log/pods',
  overlayBackend: 'vxlan',
  clusterCIDR: '10.244.0.0/16',
  flannelSubnetFile: '/run/flannel/subnet.env',
  address: '0.0.0.0',
  port: 10250,
  healthzBindAddress: '127.0.0.1',
  healthzPort: 10248,
} as const satisfies Partial<AgentConfig> & { dockerEndpoint: string };

/** Renew interval of the node Lease: a quarter of its duration, as upstream (10 s for 40 s). */
export function leaseRenewIntervalMs(config: Pick<AgentConfig, 'nodeLeaseDurationSeconds'>): number {
  return config.nodeLeaseDurationSeconds * 250;
}
