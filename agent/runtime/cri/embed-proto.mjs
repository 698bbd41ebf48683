#!/usr/bin/env node
// Regenerates api-proto.ts from api.proto: the bundle (esbuild, TS only) carries the
// proto as a string, so the installed agent needs no .proto file on disk.
// Run after editing api.proto: node agent/runtime/cri/embed-proto.mjs
// (test/unit/cri-convert.test.ts fails while the two differ).
import { readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const text = readFileSync(join(here, 'api.proto'), 'utf8');
if (text.includes('`') || text.includes('${') || text.includes('\\')) throw new Error('api.proto must not contain backticks, ${ or backslashes');
const out = `// Generated from api.proto by embed-proto.mjs: do not edit; edit api.proto and re-run it.
export const criApiProto = \`${text}\`;
`;
writeFileSync(join(here, 'api-proto.ts'), out);
console.log(`api-proto.ts: ${text.length} characters`);
