/**
 * The kubelet's client certificate life cycle (TLS bootstrap and rotation),
 * as pkg/kubelet/certificate/bootstrap and client-go's certificate manager:
 *
 * - bootstrap (before the kube client exists): when --kubeconfig is missing,
 *   unreadable or holds an expired client certificate, a P-256 key is made
 *   (kept in <cert-dir>/kubelet-client.key.tmp until the certificate arrives,
 *   so a restart reuses the same request), a CSR for CN=system:node:<node>,
 *   O=system:nodes is made with the --bootstrap-kubeconfig credentials and
 *   watched until issued; the pair goes to the certificate store
 *   (certstore.ts) and --kubeconfig is written pointing at it. Failures are
 *   logged and retried with back-off until stopped; nothing else starts
 *   meanwhile, and running pods are not touched.
 * - rotation (while the agent runs, when the certificate is the store's):
 *   at 70–90 % of the lifetime (rotation.ts) a new key and CSR are sent with
 *   the current client certificate (or the bootstrap credentials once it has
 *   expired); the new pair replaces the current one atomically and every
 *   later connection of the kube client uses it — no restart, pods untouched.
 */
import { generateKeyPairSync, createPrivateKey, X509Certificate } from 'node:crypto';
import type { KeyObject } from 'node:crypto';
import { readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { Kubeconfig } from '../kube/kubeconfig.js';
import { KnodeError, errorMessage } from '../../lib/errors.js';
import type { Logger } from '../../lib/log.js';
import { sleep } from '../../lib/sleep.js';
import { currentPath, readCurrent, storePair } from './certstore.js';
import type { StoredPair } from './certstore.js';
import { clusterInfo, loadKubeconfig, renderNodeKubeconfig, writeFileAtomic } from './kubeconfig.js';
import { requestClientCertificate } from './request.js';
import { isExpired, retryDelayMs, rotationDeadline } from './rotation.js';

export interface ClientCertOptions {
  kubeconfigPath: string;
  bootstrapKubeconfigPath: string | undefined;
  /** <root-dir>/pki */
  certDir: string;
  nodeName: string;
  /** spec.expirationSeconds of the requests; undefined = the signer's default. */
  expirationSeconds?: number;
  /** How long one request may stay unanswered before it is retried (default 15 min). */
  requestTimeoutMs?: number;
  signal: AbortSignal;
  logger: Logger;
  random?: () => number;
  now?: () => number;
}

export type KubeconfigState = { usable: true; certificate: X509Certificate | undefined } | { usable: false; why: string };

/** Whether --kubeconfig can be used as it is: loadable, and its client certificate (if any) not expired. */
export async function kubeconfigState(path: string, now: number): Promise<KubeconfigState> {
  let kc: Kubeconfig;
  try {
    kc = loadKubeconfig(path);
  } catch (err) {
    return { usable: false, why: errorMessage(err) };
  }
  const user = kc.user;
  let pem: string | undefined;
  try {
    if (user?.certData) pem = Buffer.from(user.certData, 'base64').toString('utf8');
    else if (user?.certFile) pem = await readFile(user.certFile, 'utf8');
  } catch (err) {
    return { usable: false, why: `cannot read its client certificate: ${errorMessage(err)}` };
  }
  if (pem === undefined) return { usable: true, certificate: undefined };
  let cert: X509Certificate;
  try {
    cert = new X509Certificate(pem);
  } catch (err) {
    return { usable: false, why: `its client certificate does not parse: ${errorMessage(err)}` };
  }
  if (isExpired({ notBefore: Date.parse(cert.validFrom), notAfter: Date.parse(cert.validTo) }, now)) {
    return { usable: false, why: `its client certificate expired at ${new Date(cert.validTo).toISOString()}` };
  }
  return { usable: true, certificate: cert };
}

async function pendingKey(certDir: string): Promise<KeyObject> {
  const file = join(certDir, 'kubelet-client.key.tmp');
  try {
    return createPrivateKey(await readFile(file, 'utf8'));
  } catch {
    const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
    await writeFileAtomic(file, privateKey.export({ type: 'pkcs8', format: 'pem' }).toString());
    return privateKey;
  }
}

/** Requests a certificate with `kc`'s credentials and makes it current; writes --kubeconfig from `clusterFrom`. */
async function obtain(o: ClientCertOptions, kc: Kubeconfig, clusterFrom: Kubeconfig, key: KeyObject): Promise<StoredPair> {
  const certPem = await requestClientCertificate({
    kc,
    privateKey: key,
    nodeName: o.nodeName,
    ...(o.expirationSeconds !== undefined ? { expirationSeconds: o.expirationSeconds } : {}),
    timeoutMs: o.requestTimeoutMs ?? 15 * 60_000,
    signal: o.signal,
    logger: o.logger,
  });
  const pair = await storePair(o.certDir, certPem, key.export({ type: 'pkcs8', format: 'pem' }).toString());
  await writeFileAtomic(o.kubeconfigPath, renderNodeKubeconfig(await clusterInfo(clusterFrom), currentPath(o.certDir)));
  return pair;
}

/**
 * Makes --kubeconfig usable, bootstrapping when needed; retries until it
 * succeeds. Returns false only when `signal` aborted first.
 */
export async function bootstrapClientCertificate(o: ClientCertOptions): Promise<boolean> {
  const now = o.now ?? Date.now;
  for (let attempt = 0; !o.signal.aborted; attempt++) {
    try {
      const state = await kubeconfigState(o.kubeconfigPath, now());
      if (state.usable) {
        if (attempt > 0 || state.certificate) o.logger.info('kubeconfig usable', { kubeconfig: o.kubeconfigPath, ...(state.certificate ? { certificateExpires: new Date(state.certificate.validTo).toISOString() } : {}) });
        return true;
      }
      if (o.bootstrapKubeconfigPath === undefined) throw new KnodeError('KUBECONFIG_INVALID', `kubeconfig ${o.kubeconfigPath} cannot be used (${state.why}) and no --bootstrap-kubeconfig is set`);
      o.logger.info('TLS bootstrap: requesting a client certificate', { kubeconfig: o.kubeconfigPath, why: state.why, bootstrapKubeconfig: o.bootstrapKubeconfigPath });
      const boot = loadKubeconfig(o.bootstrapKubeconfigPath);
      const key = await pendingKey(o.certDir);
      const pair = await obtain(o, boot, boot, key);
      await rm(join(o.certDir, 'kubelet-client.key.tmp'), { force: true });
      o.logger.info('TLS bootstrap: client certificate issued', { subject: pair.cert.subject.replace(/\n/g, ','), notAfter: new Date(pair.validity.notAfter).toISOString(), kubeconfig: o.kubeconfigPath });
      return true;
    } catch (err) {
      if (o.signal.aborted) break;
      const delay = retryDelayMs(attempt);
      o.logger.error('TLS bootstrap failed; retrying', { err: errorMessage(err), retryInSeconds: Math.round(delay / 1000) });
      await sleep(delay, o.signal);
    }
  }
  return false;
}

/** Sleeps until `at` in chunks (setTimeout cannot wait more than ~24 days). */
async function sleepUntil(at: number, now: () => number, signal: AbortSignal): Promise<void> {
  while (!signal.aborted && now() < at) await sleep(Math.min(at - now(), 3600_000), signal);
}

/**
 * Renews the store's certificate before it expires, until `signal` aborts.
 * Does nothing when --kubeconfig does not use the store (a certificate the
 * admin manages).
 */
export async function runClientCertificateRotation(o: ClientCertOptions): Promise<void> {
  const now = o.now ?? Date.now;
  const random = o.random ?? Math.random;
  const kc = loadKubeconfig(o.kubeconfigPath);
  if (kc.user.certFile !== currentPath(o.certDir)) {
    o.logger.info('client certificate rotation off: the kubeconfig does not use the certificate store', { kubeconfig: o.kubeconfigPath, store: currentPath(o.certDir) });
    return;
  }
  while (!o.signal.aborted) {
    const current = await readCurrent(o.certDir).catch(() => undefined);
    if (current === undefined) {
      o.logger.warn('client certificate store is empty; rotation waits for a certificate', { store: currentPath(o.certDir) });
      await sleep(60_000, o.signal);
      continue;
    }
    const deadline = rotationDeadline(current.validity, random());
    o.logger.info('client certificate rotation scheduled', { at: new Date(deadline).toISOString(), notAfter: new Date(current.validity.notAfter).toISOString() });
    await sleepUntil(deadline, now, o.signal);
    for (let attempt = 0; !o.signal.aborted; attempt++) {
      try {
        const expired = isExpired(current.validity, now());
        if (expired && o.bootstrapKubeconfigPath === undefined) throw new KnodeError('CLIENT_CERT_EXPIRED', 'the client certificate expired and no --bootstrap-kubeconfig is set');
        const creds = expired ? loadKubeconfig(o.bootstrapKubeconfigPath!) : loadKubeconfig(o.kubeconfigPath);
        const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
        const pair = await obtain(o, creds, loadKubeconfig(o.kubeconfigPath), privateKey);
        o.logger.info('client certificate rotated', { notAfter: new Date(pair.validity.notAfter).toISOString(), with: expired ? 'bootstrap credentials' : 'the current certificate' });
        break;
      } catch (err) {
        if (o.signal.aborted) return;
        const delay = retryDelayMs(attempt);
        o.logger.error('client certificate rotation failed; retrying', { err: errorMessage(err), retryInSeconds: Math.round(delay / 1000) });
        await sleep(delay, o.signal);
      }
    }
  }
}
