/**
 * Opening the container's namespace for a plugin call, with the spec's error semantics:
 * a missing netns on ADD/CHECK is "unknown container" (code 3); on DEL it means there is
 * nothing left to tear down (`undefined`).
 */
import { isKnodeError } from '../lib/errors.js';
import { Rtnl } from '../lib/netlink/socket.js';
import { CniCode, CniError } from './types.js';

export function openContainerRtnl(netns: string): Rtnl {
  try {
    return Rtnl.openIn(netns);
  } catch (err) {
    if (isKnodeError(err, 'NETNS_NOT_FOUND')) throw new CniError(CniCode.UnknownContainer, `network namespace ${netns} does not exist`, { cause: err });
    if (isKnodeError(err, 'NETNS_SETNS_FAILED') || isKnodeError(err, 'NETNS_OPEN_FAILED')) {
      throw new CniError(CniCode.InvalidEnv, `${netns} is not a usable network namespace`, { cause: err });
    }
    throw err;
  }
}

/** For DEL: the namespace's socket, or undefined when the namespace is gone. */
export function openContainerRtnlIfExists(netns: string): Rtnl | undefined {
  if (netns === '') return undefined;
  try {
    return Rtnl.openIn(netns);
  } catch (err) {
    if (isKnodeError(err, 'NETNS_NOT_FOUND')) return undefined;
    // A bind-mount left behind after the namespace died: setns fails with EINVAL.
    if (isKnodeError(err, 'NETNS_SETNS_FAILED')) return undefined;
    throw err;
  }
}
