/**
 * `images` and `registry` commands of knode-lab:
 *
 *   build                               build pause and app into build/images/*.{oci,docker}.tar
 *   push [--registry plain|auth|all]    push both images to the lab registries (default all)
 *   registry up|down|status [--registry plain|auth|all]
 *
 * Output for people goes to stdout; logs (JSON lines) to stderr.
 */
import { errorMessage, isKnodeError } from '../../lib/errors.js';
import { buildImages } from './build.js';
import { pushImages } from './push.js';
import {
  defaultRegistryNames,
  defaultRegistryOptions,
  probeAddress,
  registryStatus,
  startRegistry,
  stopRegistry,
  type DefaultRegistryName,
} from './registry.js';

const usage = `usage:
  images build
  images push [--registry plain|auth|all]
  registry up|down|status [--registry plain|auth|all]`;

function parseRegistries(args: string[]): DefaultRegistryName[] | string {
  let which = 'all';
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    if (a === '--registry' && i + 1 < args.length) which = args[++i]!;
    else if (a.startsWith('--registry=')) which = a.slice('--registry='.length);
    else return `unknown argument ${a}`;
  }
  if (which === 'all') return [...defaultRegistryNames];
  if (which === 'plain' || which === 'auth') return [which];
  return `--registry must be plain, auth or all, not ${which}`;
}

async function registryCommand(sub: string | undefined, rest: string[], out: (line: string) => void): Promise<number> {
  const names = parseRegistries(rest);
  if (typeof names === 'string') {
    out(`${names}\n${usage}`);
    return 2;
  }
  switch (sub) {
    case 'up':
      for (const name of names) {
        const s = await startRegistry(defaultRegistryOptions(name));
        out(`registry ${name}: ${s.started ? 'started' : 'already running'} on ${s.listen} (pid ${s.pid}${s.auth ? ', basic auth' : ''})`);
      }
      return 0;
    case 'down':
      for (const name of names) out(`registry ${name}: ${(await stopRegistry(name)) ? 'stopped' : 'was not running'}`);
      return 0;
    case 'status': {
      let allHealthy = true;
      for (const name of names) {
        const s = await registryStatus(name);
        allHealthy &&= s.healthy;
        out(`registry ${name}: ${s.healthy ? 'healthy' : s.running ? 'running, not answering' : 'down'}${s.listen !== undefined ? ` ${s.listen}` : ''}${s.pid !== undefined ? ` pid ${s.pid}` : ''}`);
      }
      return allHealthy ? 0 : 1;
    }
    default:
      out(usage);
      return 2;
  }
}

async function pushCommand(rest: string[], out: (line: string) => void): Promise<number> {
  const names = parseRegistries(rest);
  if (typeof names === 'string') {
    out(`${names}\n${usage}`);
    return 2;
  }
  for (const name of names) {
    const options = defaultRegistryOptions(name);
    const status = await registryStatus(name);
    if (!status.healthy) {
      out(`registry ${name} is not running: start it with \`registry up\``);
      return 1;
    }
    const pushed = await pushImages({ target: { address: probeAddress(options.listen), ...(options.auth !== undefined ? { auth: options.auth } : {}) } });
    for (const r of pushed) out(r.pushed ? `pushed ${r.ref} (${r.digest})` : `${r.ref}: up to date`);
  }
  return 0;
}

/**
 * Entry point. argv starts at the subcommand group: ['images', 'build'],
 * ['images', 'push', '--registry', 'auth'], ['registry', 'up'] — or, without the
 * group word, ['build'] / ['push', ...] (images implied).
 */
export async function main(
  argv: string[],
  out: (line: string) => void = (l) => process.stdout.write(l + '\n'),
  err: (line: string) => void = (l) => process.stderr.write(l + '\n'),
): Promise<number> {
  const args = argv[0] === 'images' ? argv.slice(1) : argv;
  const [cmd, sub, ...rest] = args;
  try {
    switch (cmd) {
      case 'build': {
        if (sub !== undefined) {
          out(usage);
          return 2;
        }
        const result = await buildImages();
        let written = 0;
        for (const r of Object.values(result)) {
          out(`${r.ref} ${r.manifestDigest}`);
          for (const a of [r.oci, r.docker]) {
            out(`  ${a.path} (${a.written ? 'written' : 'up to date'})`);
            if (a.written) written++;
          }
        }
        // One summary word that scripts can grep: 'changed' only when a file was written.
        out(written > 0 ? `images: changed (${written} archive(s) written)` : 'images: up to date');
        return 0;
      }
      case 'push':
        return await pushCommand(sub === undefined ? [] : [sub, ...rest], out);
      case 'registry':
        return await registryCommand(sub, rest, out);
      default:
        out(usage);
        return 2;
    }
  } catch (e) {
    err(`error${isKnodeError(e) ? ` (${e.code})` : ''}: ${errorMessage(e)}`);
    return 1;
  }
}

/** Shape of knode-lab's subcommands (lab/main.ts); structurally a LabCommand. */
export interface ImagesLabCommand {
  summary: string;
  usage: string;
  run(argv: string[]): Promise<number>;
}

/** Ready to spread into knode-lab's command table: `images ...` and `registry ...`. */
export const imageCommands: Record<'images' | 'registry', ImagesLabCommand> = {
  images: {
    summary: 'build the pause and app images (build/images/*.{oci,docker}.tar); push them to the local registries',
    usage: 'images build | images push [--registry plain|auth|all]',
    run: (argv) => main(['images', ...argv]),
  },
  registry: {
    summary: 'local image registries: plain on 127.0.0.1:5000, basic auth on 127.0.0.1:5001 (idempotent)',
    usage: 'registry up|down|status [--registry plain|auth|all]',
    run: (argv) => main(['registry', ...argv]),
  },
};
