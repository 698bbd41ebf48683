/**
 * knode's thin typed layer over the `netlink` package (rtnetlink): sockets bound to a network
 * namespace, links (VXLAN included), addresses, routes, neighbours and FDB entries (neigh.ts),
 * sysctls. Plain option objects in, plain records out, kernel errors as NetlinkError with an
 * errno name.
 */
export * from './socket.js';
export * from './links.js';
export * from './addrs.js';
export * from './routes.js';
export * from './neigh.js';
export * from './sysctl.js';
export * from './ip.js';
