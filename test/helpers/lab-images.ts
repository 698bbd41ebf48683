/** Preconditions of the tests that run real pods: the lab's pause and app image archives exist. */
import t from 'tap';
import { existsSync } from 'node:fs';
import { imageArchive } from '../../lab/paths.js';

type Format = Parameters<typeof imageArchive>[1];

/** Fails the test file (and exits) when an archive scripts/setup builds is missing. */
export function requireLabImages(formats: readonly Format[]): void {
  for (const name of ['pause', 'app'] as const) {
    for (const format of formats) {
      if (!existsSync(imageArchive(name, format))) {
        t.fail(`${imageArchive(name, format)} missing: run scripts/setup (or knode-lab images build)`);
        process.exit(1);
      }
    }
  }
}
