/**
 * `knode-lab apiserver`: runs the lab apiserver alone until SIGTERM/SIGINT.
 *   --data-dir DIR          PKI, kubeconfigs (default <labDataDir>/apiserver)
 *   --listen HOST:PORT      repeatable; default 127.0.0.1:6443
 *   --service-cidr CIDR     default 10.96.0.0/16
 *   --persist FILE          keep objects in FILE across restarts
 *   --token-file FILE       static tokens: token,user,uid,"group1,group2"
 *   --node NAME             repeatable; writes <data-dir>/nodes/NAME.kubeconfig
 *   --san NAME|IP           repeatable; extra SANs for the serving certificate
 *   --node-server URL       server URL written into node kubeconfigs
 *   --advertise IP:PORT     endpoints of the `kubernetes` service (default: the
 *                           first non-loopback listen address, else the first)
 *   --listen HOST:PORT@NS   bind inside the network namespace at path NS
 *   --egress-netns NS       make outgoing connections (to kubelets) from NS
 *   --controllers           also run the lab controllers (lab/controllers) in this process
 *   --cluster-cidr CIDR     pod CIDR the node-ipam controller splits (default 10.244.0.0/16)
 *   --cluster-signing-duration SECONDS
 *                           validity of kubelet client certificates the csrsigning
 *                           controller issues with the lab CA (default one year)
 *   --disable-admission-plugins ServiceAccount
 *                           do not run the ServiceAccount admission plugin (on by
 *                           default here: pods get serviceAccountName and the
 *                           kube-api-access projected volume)
 *   --service-account-min-token-expiration SECONDS
 *                           TESTS ONLY: lower bound of a TokenRequest's and a pod's
 *                           serviceAccountToken expirationSeconds (default 600, as
 *                           upstream), so a test can watch a token being refreshed
 */
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { parse as parseYaml, stringify as stringifyYaml } from 'yaml';
import { startControllers, type RunningControllers } from '../controllers/index.js';
import { errorMessage, isKnodeError, KnodeError } from '../../lib/errors.js';
import { createLogger } from '../../lib/log.js';
import { labDataDir } from '../paths.js';
import { startApiServer } from './server.js';
import type { ApiServerOptions } from './server.js';

const log = createLogger({ component: 'apiserver' });

/** The apiserver's options, plus the lab controllers to run in the same process (`--controllers`). */
export type ApiServerArgs = ApiServerOptions & { controllers?: { clusterCIDR?: string; clusterSigningDurationSeconds?: number } };

export function parseArgs(argv: string[]): ApiServerArgs {
  const opts: ApiServerArgs = { dataDir: join(labDataDir, 'apiserver'), listen: [], nodes: [], extraSANs: [], serviceAccountAdmission: true };
  let clusterCIDR: string | undefined;
  let signingSeconds: number | undefined;
  let controllers = false;
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    const [flag, inline] = arg.includes('=') ? [arg.slice(0, arg.indexOf('=')), arg.slice(arg.indexOf('=') + 1)] : [arg, undefined];
    const value = (): string => {
      if (inline !== undefined) return inline;
      const v = argv[++i];
      if (v === undefined) throw new KnodeError('USAGE', `${flag} needs a value`);
      return v;
    };
    switch (flag) {
      case '--data-dir':
        opts.dataDir = value();
        break;
      case '--listen':
        opts.listen!.push(value());
        break;
      case '--service-cidr':
        opts.serviceCIDR = value();
        break;
      case '--persist':
        opts.persistPath = value();
        break;
      case '--token-file':
        opts.tokenFile = value();
        break;
      case '--node':
        opts.nodes!.push(value());
        break;
      case '--san':
        opts.extraSANs!.push(value());
        break;
      case '--controllers':
        controllers = true;
        break;
      case '--cluster-cidr':
        clusterCIDR = value();
        break;
      case '--cluster-signing-duration': {
        const v = value();
        const m = /^(\d+)(s?)$/.exec(v);
        if (!m || Number(m[1]) < 600) throw new KnodeError('USAGE', `--cluster-signing-duration needs seconds (at least 600), got "${v}"`);
        signingSeconds = Number(m[1]);
        break;
      }
      case '--disable-admission-plugins': {
        const plugins = value().split(',').map((p) => p.trim()).filter(Boolean);
        const unknown = plugins.filter((p) => p !== 'ServiceAccount');
        if (unknown.length > 0) throw new KnodeError('USAGE', `--disable-admission-plugins: unknown plugin(s) ${unknown.join(', ')} (the lab has: ServiceAccount)`);
        if (plugins.includes('ServiceAccount')) opts.serviceAccountAdmission = false;
        break;
      }
      case '--service-account-min-token-expiration': {
        const v = value();
        if (!/^\d+$/.test(v) || Number(v) < 1) throw new KnodeError('USAGE', `--service-account-min-token-expiration needs whole seconds, got "${v}"`);
        opts.serviceAccountMinTokenExpirationSeconds = Number(v);
        break;
      }
      case '--egress-netns':
        opts.egressNetns = value();
        break;
      case '--node-server':
        opts.nodeServerUrl = value();
        break;
      case '--advertise': {
        const v = value();
        const m = v.match(/^(\d{1,3}(?:\.\d{1,3}){3}):(\d+)$/);
        if (!m) throw new KnodeError('USAGE', `--advertise needs IPv4:PORT, got "${v}"`);
        opts.advertise = { ip: m[1]!, port: Number(m[2]) };
        break;
      }
      default:
        throw new KnodeError('USAGE', `unknown argument "${arg}"`);
    }
  }
  if (clusterCIDR !== undefined && !controllers) throw new KnodeError('USAGE', '--cluster-cidr needs --controllers');
  if (signingSeconds !== undefined && !controllers) throw new KnodeError('USAGE', '--cluster-signing-duration needs --controllers');
  if (controllers) {
    opts.controllers = {
      ...(clusterCIDR === undefined ? {} : { clusterCIDR }),
      ...(signingSeconds === undefined ? {} : { clusterSigningDurationSeconds: signingSeconds }),
    };
  }
  return opts;
}

/** A kubeconfig like the admin's but pointing at `server` (the URL this process can reach). */
async function writeSelfKubeconfig(adminKubeconfig: string, server: string, path: string): Promise<void> {
  const doc: unknown = parseYaml(await readFile(adminKubeconfig, 'utf8'));
  const clusters = (doc as { clusters?: { cluster?: { server?: string } }[] }).clusters;
  if (!Array.isArray(clusters) || clusters.length === 0 || !clusters[0]?.cluster) {
    throw new KnodeError('KUBECONFIG_INVALID', `${adminKubeconfig} has no cluster`);
  }
  for (const c of clusters) if (c.cluster) c.cluster.server = server;
  await writeFile(path, stringifyYaml(doc), { mode: 0o600 });
}

export async function main(argv: string[]): Promise<number> {
  let opts: ApiServerArgs;
  try {
    opts = parseArgs(argv);
  } catch (err) {
    if (isKnodeError(err, 'USAGE')) {
      process.stderr.write(`knode-lab apiserver: ${err.message}\n`);
      return 2;
    }
    throw err;
  }
  let server;
  try {
    server = await startApiServer(opts);
  } catch (err) {
    log.error('cannot start the apiserver', { err });
    process.stderr.write(`knode-lab apiserver: ${errorMessage(err)}\n`);
    return 1;
  }
  process.stdout.write(`apiserver listening on ${server.urls.join(', ')}\nadmin kubeconfig: ${server.adminKubeconfig}\n`);
  let controllers: RunningControllers | undefined;
  if (opts.controllers) {
    try {
      const kubeconfigPath = join(opts.dataDir, 'controllers.kubeconfig');
      await writeSelfKubeconfig(server.adminKubeconfig, server.selfUrl, kubeconfigPath);
      controllers = await startControllers({
        kubeconfigPath,
        rootCAFile: server.pki.ca.certFile,
        ...(opts.controllers.clusterCIDR ? { clusterCIDR: opts.controllers.clusterCIDR } : {}),
        clusterSigning: {
          certFile: server.pki.ca.certFile,
          keyFile: server.pki.ca.keyFile,
          ...(opts.controllers.clusterSigningDurationSeconds === undefined ? {} : { durationSeconds: opts.controllers.clusterSigningDurationSeconds }),
        },
      });
      process.stdout.write(`controllers running (scheduler, endpointslice, node-ipam, replicaset, deployment, garbage collector, csrapproving, csrsigning, serviceaccount, root-ca-cert-publisher) against ${server.selfUrl}\n`);
    } catch (err) {
      log.error('cannot start the controllers', { err });
      await server.close();
      return 1;
    }
  }
  const running = server;
  const runningControllers = controllers;
  await new Promise<void>((resolve) => {
    const stop = (signal: string): void => {
      log.info('stopping', { signal });
      process.off('SIGTERM', onTerm);
      process.off('SIGINT', onInt);
      (runningControllers ? runningControllers.stop() : Promise.resolve())
        .then(() => running.close())
        .then(resolve, (err: unknown) => {
        log.error('error while stopping', { err });
        resolve();
      });
    };
    const onTerm = (): void => stop('SIGTERM');
    const onInt = (): void => stop('SIGINT');
    process.on('SIGTERM', onTerm);
    process.on('SIGINT', onInt);
  });
  return 0;
}
