// knode-host-local: CNI IPAM plugin, drop-in for the reference host-local.
import { runPlugin } from '../skel.js';
import { hostLocalPlugin } from '../ipam/host-local.js';

await runPlugin(hostLocalPlugin);
