#!/usr/bin/env node
// Summarises tap's TAP output. A "test" is a first-level point inside a test
// file (a t.test() block, or a plain assertion at the top of a file); a file
// that fails outside its points (crash, timeout) counts as one failed test.
// --total prints the closing "N passed, N failed" line (exit 1 when N failed > 0).
import { existsSync, readFileSync } from 'node:fs';

const args = process.argv.slice(2);
let label = '';
let total = false;
let extraFailed = 0;
const files = [];
for (let i = 0; i < args.length; i++) {
  const a = args[i];
  if (a === '--label') label = args[++i] ?? '';
  else if (a === '--total') total = true;
  else if (a === '--extra-failed') extraFailed = Number(args[++i] ?? 0);
  else files.push(a);
}

export function summarise(text) {
  let passed = 0;
  let failed = 0;
  let skipped = 0;
  const failures = [];
  let currentFile = '';
  let fileInnerFailed = 0;
  for (const line of text.split('\n')) {
    // tap announces each file before its points: "# Subtest: test/unit/x.test.ts".
    const announced = /^# Subtest: (\S+)/.exec(line);
    if (announced) {
      currentFile = announced[1];
      continue;
    }
    const inner = /^ {4}(not ok|ok) \d+(?: - (.*))?$/.exec(line);
    if (inner) {
      const ok = inner[1] === 'ok';
      const name = inner[2] ?? '';
      if (/# SKIP/i.test(name)) skipped++;
      else if (ok) passed++;
      else {
        failed++;
        fileInnerFailed++;
        failures.push(`${currentFile}: ${name}`);
      }
      continue;
    }
    const top = /^(not ok|ok) \d+ - (\S+)/.exec(line);
    if (top) {
      currentFile = top[2];
      if (top[1] === 'not ok' && fileInnerFailed === 0) {
        failed++;
        failures.push(`${currentFile}: the file failed outside its tests (crash, timeout or plan)`);
      }
      fileInnerFailed = 0;
    }
  }
  return { passed, failed, skipped, failures };
}

let passed = 0;
let failed = extraFailed;
let skipped = 0;
const failures = [];
for (const f of files) {
  if (!existsSync(f)) continue;
  const s = summarise(readFileSync(f, 'utf8'));
  passed += s.passed;
  failed += s.failed;
  skipped += s.skipped;
  failures.push(...s.failures);
}
if (total) {
  if (extraFailed > 0) failures.unshift(`${extraFailed} check(s) (type-check/lint) failed`);
  for (const f of failures) console.log(`FAILED ${f}`);
  console.log(`${passed} passed, ${failed} failed` + (skipped ? `, ${skipped} skipped` : ''));
  process.exit(failed > 0 ? 1 : 0);
} else {
  for (const f of failures) console.log(`  FAILED ${f}`);
  console.log(`  ${label}: ${passed} passed, ${failed} failed` + (skipped ? `, ${skipped} skipped` : ''));
}
