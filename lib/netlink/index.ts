/**
 * knode's thin typed layer over the `netlink` package (rtnetlink): sockets bound to a network
 * namespace, links, addresses, routes, sysctls. Neighbours and FDB entries (for the VXLAN
 * overlay) belong here too, as neigh.ts with the same shape: plain option objects in, plain
 * records out, kernel errors as NetlinkError with an errno name.
 */
export * from './socket.js';
export * from './links.js';
export * from './addrs.js';
export * from './routes.js';
export * from './sysctl.js';
export * from './ip.js';
