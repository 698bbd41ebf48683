#!/usr/bin/env node
// Bundles one benchmark (bench/<name>.ts) into build/bench/<name>.mjs, the way scripts/build.mjs
// bundles the programs (native addons external), and prints the output path.
//   node scripts/bundle-bench.mjs bench/proxy.ts
import { build } from 'esbuild';
import { mkdirSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const entry = process.argv[2];
if (!entry) {
  console.error('usage: bundle-bench.mjs bench/<name>.ts');
  process.exit(2);
}
const outfile = join(root, 'build', 'bench', `${basename(entry, '.ts')}.mjs`);
mkdirSync(dirname(outfile), { recursive: true });
await build({
  entryPoints: [join(root, entry)],
  outfile,
  bundle: true,
  platform: 'node',
  target: 'node20',
  format: 'esm',
  external: ['esbuild', 'koffi', 'netlink'],
  alias: { ssh2: join(root, 'lib', 'ssh2-unsupported.ts') },
  logLevel: 'warning',
  banner: { js: "import { createRequire as __knodeCreateRequire } from 'node:module';\nconst require = __knodeCreateRequire(import.meta.url);" },
});
console.log(outfile);
