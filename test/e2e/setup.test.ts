// scripts/setup is idempotent: run again on a set-up machine, it changes nothing
// (no step reports a change, and the built artifacts keep their bytes and mtimes).
import t from 'tap';
import { spawnSync } from 'node:child_process';
import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { repoRoot, imagesDir } from '../../lab/paths.js';

function snapshot(dir: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const name of readdirSync(dir)) {
    const st = statSync(join(dir, name));
    if (st.isFile()) out.set(name, st.mtimeMs);
  }
  return out;
}

function runSetup(): { code: number | null; out: string } {
  const r = spawnSync(join(repoRoot, 'scripts/setup'), [], { cwd: repoRoot, encoding: 'utf8', timeout: 900_000 });
  return { code: r.status, out: `${r.stdout}\n${r.stderr}` };
}

t.test('a second run of scripts/setup is a no-op', async (t) => {
  const first = runSetup();
  t.equal(first.code, 0, 'first run succeeds');
  const dist = snapshot(join(repoRoot, 'dist'));
  const images = snapshot(imagesDir);
  t.ok(images.size >= 4, 'images were built (oci and docker archives of pause and app)');

  const second = runSetup();
  t.equal(second.code, 0, 'second run succeeds');
  t.match(second.out, /^setup: 0 step\(s\) changed$/m, 'second run reports no change');
  t.notMatch(second.out, /: changed \(/, 'no step changed');
  t.same(snapshot(join(repoRoot, 'dist')), dist, 'dist/ untouched');
  t.same(snapshot(imagesDir), images, 'image archives untouched');
});
