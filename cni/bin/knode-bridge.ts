// knode-bridge: CNI plugin, drop-in for the reference bridge plugin.
import { runPlugin } from '../skel.js';
import { bridgePlugin } from '../bridge.js';

await runPlugin(bridgePlugin);
