// knode-portmap: chained CNI plugin, drop-in for the reference portmap (hostPort DNAT/SNAT chains).
// A thin shim: the request goes to knode-cni-daemon when it runs, else the plugin runs in-process
// (cni/daemon/shim.ts).
import { runShim } from '../daemon/shim.js';

await runShim('knode-portmap', async () => (await import('../portmap.js')).portmapPlugin);
