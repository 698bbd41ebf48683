/**
 * Stands in for the `ssh2` package in knode's bundles (scripts/build.mjs aliases it here).
 *
 * dockerode's transport library (docker-modem) loads ssh2 at start-up for `ssh://` Docker hosts.
 * knode talks to dockerd over its unix socket only, and ssh2 carries an optional native addon that
 * cannot be bundled; shipping it just for an unused transport would add a native dependency to
 * every install. Asking for an ssh:// endpoint fails with a clear error instead.
 */
import { KnodeError } from './errors.js';

export class Client {
  constructor() {
    throw new KnodeError('DOCKER_SSH_UNSUPPORTED', 'knode talks to dockerd over its unix socket; ssh:// Docker hosts are not supported');
  }

  /** ssh2's Client API entry point; never reached (the constructor throws). */
  connect(): never {
    throw new KnodeError('DOCKER_SSH_UNSUPPORTED', 'ssh:// Docker hosts are not supported');
  }
}
