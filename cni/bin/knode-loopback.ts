// knode-loopback: CNI plugin that sets lo up in the container. A thin shim: the request goes to
// knode-cni-daemon when it runs, else the plugin runs in-process (cni/daemon/shim.ts).
import { runShim } from '../daemon/shim.js';

await runShim('knode-loopback', async () => (await import('../loopback.js')).loopbackPlugin);
