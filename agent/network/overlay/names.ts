/** The overlay backends knode-agent knows (`--overlay-backend`); no imports, so the config can use it. */
export const overlayBackendNames = ['vxlan', 'host-gw', 'none'] as const;
export type OverlayBackendName = (typeof overlayBackendNames)[number];

export function isOverlayBackendName(value: string): value is OverlayBackendName {
  return (overlayBackendNames as readonly string[]).includes(value);
}
