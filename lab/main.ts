/**
 * knode-lab: the one-machine lab's program (bundled into dist/knode-lab.mjs,
 * run through scripts/lab). A small dispatcher over a table of subcommands.
 */
import { isKnodeError, errorMessage } from '../lib/errors.js';
import { machineCommands, type LabCommand } from './machines/cli.js';
import { imageCommands } from './images/cli.js';
import { main as apiserverMain } from './apiserver/cli.js';

const commands: Record<string, LabCommand> = {
  // Lab machines: network namespaces, runtimes (lab/machines/).
  ...machineCommands,
  // Images (pause, app) and the local registries (lab/images/).
  ...imageCommands,
  // The lab control plane's apiserver, runnable alone (lab/apiserver/).
  apiserver: {
    summary: 'run the lab apiserver in the foreground (HTTPS, kubeconfigs under --data-dir)',
    usage: 'apiserver [--data-dir DIR] [--listen HOST:PORT[@NETNS]]... [--egress-netns NETNS] [--persist FILE] [--node NAME]... [--service-cidr CIDR]',
    run: apiserverMain,
  },
};

function help(): string {
  const width = Math.max(...Object.keys(commands).map((k) => k.length));
  const lines = ['usage: scripts/lab COMMAND [ARGS...]', '', 'commands:'];
  for (const [name, c] of Object.entries(commands)) lines.push(`  ${name.padEnd(width)}  ${c.summary}`, `  ${' '.repeat(width)}  usage: ${c.usage}`);
  lines.push('', 'Progress goes to stderr; status and env print to stdout.');
  return lines.join('\n') + '\n';
}

async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === '--help' || name === '-h' || name === 'help') {
    process.stdout.write(help());
    return name === undefined ? 2 : 0;
  }
  const command = commands[name];
  if (!command) {
    process.stderr.write(`knode-lab: unknown command ${name}\n\n${help()}`);
    return 2;
  }
  if (rest[0] === '--help' || rest[0] === '-h') {
    process.stdout.write(`usage: scripts/lab ${command.usage}\n${command.summary}\n`);
    return 0;
  }
  return command.run(rest);
}

// `scripts/lab status | head`: a closed stdout is not an error.
process.stdout.on('error', (err: NodeJS.ErrnoException) => {
  if (err.code === 'EPIPE') process.exit(process.exitCode ?? 0);
  throw err;
});

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    if (isKnodeError(err)) {
      process.stderr.write(`knode-lab: error [${err.code}]: ${err.message}\n`);
      process.exitCode = err.code === 'LAB_USAGE' ? 2 : 1;
    } else {
      process.stderr.write(`knode-lab: unexpected error: ${err instanceof Error && err.stack ? err.stack : errorMessage(err)}\n`);
      process.exitCode = 1;
    }
  },
);
