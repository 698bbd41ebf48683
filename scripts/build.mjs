#!/usr/bin/env node
// Bundles each knode program into one ESM file under dist/ so that start-up loads one file.
// Native addons (koffi, netlink) stay external and load from node_modules. `ssh2` (docker-modem's
// ssh:// transport, unused by knode, with an optional native addon) is replaced by
// lib/ssh2-unsupported.ts, so that the bundles need nothing else at run time.
import { build } from 'esbuild';
import { existsSync, mkdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');

// program name -> entry point. Every program knode ships is listed here.
export const programs = {
  'knode-lab': 'lab/main.ts',
  'knode-bridge': 'cni/bin/knode-bridge.ts',
  'knode-host-local': 'cni/bin/knode-host-local.ts',
  'knode-loopback': 'cni/bin/knode-loopback.ts',
  'knode-portmap': 'cni/bin/knode-portmap.ts',
  'knode-flannel': 'cni/bin/knode-flannel.ts',
  'knode-proxy': 'proxy/main.ts',
  'knode-cni-daemon': 'cni/bin/knode-cni-daemon.ts',
  'knode-agent': 'agent/main.ts',
};

const banner = [
  '#!/usr/bin/env node',
  "import { createRequire as __knodeCreateRequire } from 'node:module';",
  'const require = __knodeCreateRequire(import.meta.url);',
].join('\n');

mkdirSync(join(root, 'dist'), { recursive: true });
const started = Date.now();
await Promise.all(
  Object.entries(programs).map(([name, entry]) => {
    const file = join(root, entry);
    if (!existsSync(file)) throw new Error(`build: entry point ${entry} of ${name} is missing`);
    return build({
      entryPoints: [file],
      outfile: join(root, 'dist', `${name}.mjs`),
      bundle: true,
      platform: 'node',
      target: 'node20',
      format: 'esm',
      sourcemap: 'linked',
      external: ['koffi', 'netlink'],
      alias: { ssh2: join(root, 'lib', 'ssh2-unsupported.ts') },
      banner: { js: banner },
      logLevel: 'warning',
    });
  }),
);
console.log(`build: ${Object.keys(programs).length} program(s) bundled into dist/ in ${Date.now() - started} ms`);
