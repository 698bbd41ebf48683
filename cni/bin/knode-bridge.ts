// knode-bridge: CNI plugin, drop-in for the reference bridge plugin. A thin shim: the request goes
// to knode-cni-daemon when it runs, else the plugin runs in-process (cni/daemon/shim.ts).
import { runShim } from '../daemon/shim.js';

await runShim('knode-bridge', async () => (await import('../bridge.js')).bridgePlugin);
