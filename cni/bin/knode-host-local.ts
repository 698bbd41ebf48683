// knode-host-local: CNI IPAM plugin, drop-in for the reference host-local. A thin shim: the request
// goes to knode-cni-daemon when it runs, else the plugin runs in-process (cni/daemon/shim.ts).
import { runShim } from '../daemon/shim.js';

await runShim('knode-host-local', async () => (await import('../ipam/host-local.js')).hostLocalPlugin);
