/** The overlay backends, picked by name from an explicit map (`--overlay-backend`). */
import { createHostGwBackend } from './host-gw/backend.js';
import type { OverlayBackendFactory } from './types.js';
import { createVxlanBackend } from './vxlan/backend.js';
import type { OverlayBackendName } from './names.js';

export const overlayBackends: Record<Exclude<OverlayBackendName, 'none'>, OverlayBackendFactory> = {
  vxlan: createVxlanBackend,
  'host-gw': createHostGwBackend,
};

export * from './names.js';
export * from './types.js';
export * from './annotations.js';
