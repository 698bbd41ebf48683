// knode-flannel: the flannel CNI meta plugin (subnet.env → bridge + host-local delegate). A thin
// shim: the request goes to knode-cni-daemon when it runs, else the plugin runs in-process
// (cni/daemon/shim.ts).
import { runShim } from '../daemon/shim.js';

await runShim('knode-flannel', async () => (await import('../flannel.js')).flannelPlugin);
