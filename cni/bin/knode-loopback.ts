// knode-loopback: CNI plugin that sets lo up in the container.
import { runPlugin } from '../skel.js';
import { loopbackPlugin } from '../loopback.js';

await runPlugin(loopbackPlugin);
