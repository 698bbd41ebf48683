/**
 * Lazy, CommonJS loading of the two native packages (netlink, koffi).
 * - Lazy: a plugin call that needs neither (VERSION, a DEL with nothing to do) does not pay for
 *   them.
 * - Through `createRequire` instead of an ESM `import`: importing a CJS package from ESM makes
 *   Node run cjs-module-lexer over every file of it (≈9 ms for netlink at each start-up here).
 */
import { createRequire } from 'node:module';
import type * as NetlinkModule from 'netlink';
import type * as KoffiModule from 'koffi';

const cjsRequire = createRequire(import.meta.url);
let netlinkMod: typeof NetlinkModule | undefined;
let koffiMod: typeof KoffiModule | undefined;

export function netlinkModule(): typeof NetlinkModule {
  netlinkMod ??= cjsRequire('netlink') as typeof NetlinkModule;
  return netlinkMod;
}

export function koffiModule(): typeof KoffiModule {
  koffiMod ??= cjsRequire('koffi') as typeof KoffiModule;
  return koffiMod;
}
