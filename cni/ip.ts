// IP arithmetic lives with the netlink helpers (lib/netlink/ip.ts); re-exported for the plugins.
export * from '../lib/netlink/ip.js';
