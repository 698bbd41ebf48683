// knode-cni-daemon: serves knode-bridge, knode-host-local, knode-loopback, knode-portmap and
// knode-flannel requests from the plugin shims over a unix socket (cni/daemon/). Run it as root in
// the node's network namespace (the namespace containerd runs the plugins in); callers from other
// namespaces fall back to in-process work.
//   knode-cni-daemon [--socket PATH] [--request-timeout-ms N] [--log-requests]
// The socket defaults to $KNODE_CNI_SOCKET, else /run/knode/cni.sock. --log-requests logs each
// request (plugin, command, container, exit code, ms) at info level instead of debug.
import { parseArgs } from 'node:util';
import { createLogger } from '../../lib/log.js';
import { errorMessage } from '../../lib/errors.js';
import { bridgePlugin } from '../bridge.js';
import { hostLocalPlugin } from '../ipam/host-local.js';
import { loopbackPlugin } from '../loopback.js';
import { portmapPlugin } from '../portmap.js';
import { flannelPlugin } from '../flannel.js';
import { CniDaemon, DEFAULT_REQUEST_TIMEOUT_MS } from '../daemon/server.js';
import { checkPeer } from '../daemon/peer.js';
import { socketPathFromEnv } from '../daemon/protocol.js';
import { koffiModule, netlinkModule } from '../../lib/netlink/native.js';

const log = createLogger({ component: 'knode-cni-daemon' });

function usage(msg: string): never {
  process.stderr.write(`knode-cni-daemon: ${msg}\nusage: knode-cni-daemon [--socket PATH] [--request-timeout-ms N] [--log-requests]\n`);
  process.exit(2);
}

let values: { socket?: string; 'request-timeout-ms'?: string; 'log-requests'?: boolean };
try {
  ({ values } = parseArgs({
    options: { socket: { type: 'string' }, 'request-timeout-ms': { type: 'string' }, 'log-requests': { type: 'boolean' } },
    strict: true,
    allowPositionals: false,
  }));
} catch (err) {
  usage(errorMessage(err));
}
const timeoutText = values['request-timeout-ms'];
const requestTimeoutMs = timeoutText === undefined ? DEFAULT_REQUEST_TIMEOUT_MS : Number(timeoutText);
if (!Number.isInteger(requestTimeoutMs) || requestTimeoutMs <= 0) usage(`invalid --request-timeout-ms ${timeoutText ?? ''}`);
if (process.getuid?.() !== 0) usage('must run as root');

// Load the native modules now, not on the first pod's request.
netlinkModule();
koffiModule();

// The daemon's own env must not leak CNI_* into requests (server.ts removes them anyway).
const daemon = new CniDaemon({
  socketPath: values.socket ?? socketPathFromEnv(process.env),
  plugins: {
    'knode-bridge': bridgePlugin,
    'knode-host-local': hostLocalPlugin,
    'knode-loopback': loopbackPlugin,
    'knode-portmap': portmapPlugin,
    'knode-flannel': flannelPlugin,
  },
  requestTimeoutMs,
  log,
  logRequests: values['log-requests'] === true,
  checkPeer,
});

try {
  await daemon.listen();
} catch (err) {
  log.error('cannot start', { err });
  process.exit(1);
}

let stopping = false;
for (const sig of ['SIGTERM', 'SIGINT'] as const) {
  process.on(sig, () => {
    if (stopping) return;
    stopping = true;
    log.info('stopping', { signal: sig, inFlight: daemon.requestsInFlight });
    void daemon.close().then(() => process.exit(0));
  });
}
