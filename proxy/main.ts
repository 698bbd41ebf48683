/**
 * knode-proxy: the program (kube-proxy's command line).
 *
 * - Bad flags or config file: the problems on stderr, exit 2.
 * - `--cleanup`: remove every chain, rule and table any mode programmed (both families), exit
 *   0 (1 if something could not be removed).
 * - SIGTERM / SIGINT: stop watching and serving, leave the rules in place (a restarted proxy
 *   takes them over with a full sync), exit 0.
 */
import { readFileSync } from 'node:fs';
import { KubeConfig } from '@kubernetes/client-node';
import { errorMessage, isKnodeError } from '../lib/errors.js';
import { createLogger } from '../lib/log.js';
import { notifySystemd } from '../lib/sd-notify.js';
import { USAGE, parseProxyArgs, type ProxyConfig } from './config.js';
import { Proxier, cleanupAll } from './proxier.js';

async function main(argv: string[]): Promise<number> {
  let config: ProxyConfig;
  try {
    config = parseProxyArgs(argv, { readFile: (p) => readFileSync(p, 'utf8') });
  } catch (err) {
    if (isKnodeError(err, 'PROXY_CONFIG_INVALID')) {
      process.stderr.write(`knode-proxy: ${err.message}\n\n${USAGE}\n`);
      return 2;
    }
    throw err;
  }
  if (config.help) {
    process.stdout.write(`${USAGE}\n`);
    return 0;
  }
  const log = createLogger({ component: 'knode-proxy', level: config.verbosity >= 4 ? 'debug' : undefined });

  if (config.cleanup) {
    const { errors } = await cleanupAll({ logger: log });
    for (const e of errors) log.error('cleanup failed', { problem: e });
    return errors.length === 0 ? 0 : 1;
  }

  const kc = new KubeConfig();
  try {
    if (config.kubeconfig !== undefined) kc.loadFromFile(config.kubeconfig);
    else kc.loadFromDefault();
  } catch (err) {
    log.error('cannot load the kubeconfig', { path: config.kubeconfig, err: errorMessage(err) });
    return 1;
  }
  const proxier = new Proxier({ config, kubeConfig: kc, logger: log, processMetrics: true });
  let stopping: Promise<void> | undefined;
  const done = new Promise<number>((resolve) => {
    const onSignal = (signal: NodeJS.Signals): void => {
      if (stopping) return;
      log.info('stopping; the rules stay in place', { signal });
      stopping = proxier.stop().then(
        () => resolve(0),
        (err: unknown) => {
          log.error('stop failed', { err });
          resolve(1);
        },
      );
    };
    process.on('SIGTERM', onSignal);
    process.on('SIGINT', onSignal);
  });
  try {
    await proxier.start();
    notifySystemd(log, { READY: 1, STATUS: `proxying in ${proxier.mode} mode` });
  } catch (err) {
    log.error('knode-proxy failed to start', { err });
    await proxier.stop().catch(() => undefined);
    return 1;
  }
  return done;
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err: unknown) => {
    process.stderr.write(`knode-proxy: ${errorMessage(err)}\n`);
    process.exit(1);
  },
);
