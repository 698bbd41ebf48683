/**
 * One certificate request as the kubelet makes it (client-go
 * util/certificate/csr): create a CertificateSigningRequest for signer
 * kubernetes.io/kube-apiserver-client-kubelet with usages digital signature +
 * client auth and the wanted expirationSeconds, then watch it (an informer
 * on metadata.name, which resumes or relists when the watch breaks) until it
 * is issued, denied or failed, or the timeout passes.
 *
 * The name is a digest of the public key, subject and usages (upstream's
 * digestedName), so a retry with the same key finds its earlier request
 * (AlreadyExists with the same spec.request → wait on that one).
 */
import { createHash, createPublicKey } from 'node:crypto';
import type { KeyObject } from 'node:crypto';
import type { V1CertificateSigningRequest } from '@kubernetes/client-node';
import { KnodeError } from '../../lib/errors.js';
import type { Logger } from '../../lib/log.js';
import { createCsr } from '../../lib/x509/pkcs10.js';
import { apiErrorSummary, createKubeClient, httpStatus, type KubeClient } from '../kube/client.js';
import { restListWatch, startInformer } from '../kube/informer.js';
import type { Kubeconfig } from '../kube/kubeconfig.js';

export const kubeletClientSigner = 'kubernetes.io/kube-apiserver-client-kubelet';
export const clientUsages = ['digital signature', 'client auth'] as const;

export interface RequestOptions {
  /** Credentials the request is made with (bootstrap token, or the current client certificate). */
  kc: Kubeconfig;
  privateKey: KeyObject;
  nodeName: string;
  /** spec.expirationSeconds; undefined = the signer's default. */
  expirationSeconds?: number;
  timeoutMs: number;
  signal: AbortSignal;
  logger: Logger;
}

/** The CSR's name for a key, subject and usages. Pure. */
export function digestedName(privateKey: KeyObject, commonName: string, organizations: string[], usages: readonly string[]): string {
  const h = createHash('sha256');
  const spki = createPublicKey(privateKey).export({ type: 'spki', format: 'der' });
  for (const part of [spki, Buffer.from(commonName), ...organizations.map((o) => Buffer.from(o)), ...usages.map((u) => Buffer.from(u))]) {
    h.update(String(part.length) + ':');
    h.update(part);
  }
  return `node-csr-${h.digest('base64url')}`;
}

/** What the watched request says: still pending, issued (PEM), or refused. Pure. */
export function requestOutcome(csr: V1CertificateSigningRequest): { state: 'pending' } | { state: 'issued'; certPem: string } | { state: 'refused'; message: string } {
  const conds = csr.status?.conditions ?? [];
  for (const c of conds) {
    if ((c.type === 'Denied' || c.type === 'Failed') && c.status !== 'False') {
      return { state: 'refused', message: `certificate request ${csr.metadata?.name ?? ''} ${c.type === 'Denied' ? 'was denied' : 'failed'}: ${c.reason ?? ''} ${c.message ?? ''}`.trim() };
    }
  }
  const approved = conds.some((c) => c.type === 'Approved' && c.status !== 'False');
  const cert = csr.status?.certificate;
  if (approved && cert) return { state: 'issued', certPem: Buffer.from(cert, 'base64').toString('utf8') };
  return { state: 'pending' };
}

/** Creates (or finds) the request and waits for its certificate; returns the PEM. */
export async function requestClientCertificate(o: RequestOptions): Promise<string> {
  const client = createKubeClient(o.kc);
  try {
    return await requestWith(o, client);
  } finally {
    client.rest.close();
  }
}

async function requestWith(o: RequestOptions, client: KubeClient): Promise<string> {
  const cn = `system:node:${o.nodeName}`;
  const orgs = ['system:nodes'];
  const api = client.certificates;
  const pem = createCsr(o.privateKey, { commonName: cn, organizations: orgs });
  const request = Buffer.from(pem).toString('base64');
  const name = digestedName(o.privateKey, cn, orgs, clientUsages);
  const body: V1CertificateSigningRequest = {
    apiVersion: 'certificates.k8s.io/v1',
    kind: 'CertificateSigningRequest',
    metadata: { name },
    spec: {
      request,
      signerName: kubeletClientSigner,
      usages: [...clientUsages],
      ...(o.expirationSeconds !== undefined ? { expirationSeconds: o.expirationSeconds } : {}),
    },
  };
  try {
    await api.createCertificateSigningRequest({ body });
    o.logger.info('certificate signing request created', { csr: name, signer: kubeletClientSigner });
  } catch (err) {
    if (httpStatus(err) !== 409) throw new KnodeError('CSR_CREATE_FAILED', `cannot create the certificate signing request: ${apiErrorSummary(err)}`, { cause: err });
    const existing = await api.readCertificateSigningRequest({ name });
    if (existing.spec.request !== request) {
      throw new KnodeError('CSR_CREATE_FAILED', `certificate signing request ${name} exists with a different request`);
    }
    o.logger.info('waiting on the existing certificate signing request', { csr: name });
  }
  return waitForCertificate(o, client, name);
}

async function waitForCertificate(o: RequestOptions, client: Pick<KubeClient, 'rest'>, name: string): Promise<string> {
  const stop = new AbortController();
  let settle: (r: { ok: string } | { err: Error }) => void = () => undefined;
  const result = new Promise<{ ok: string } | { err: Error }>((resolve) => (settle = resolve));
  const onAbort = (): void => {
    settle({ err: new KnodeError('ABORTED', 'stopped while waiting for the certificate') });
    stop.abort();
  };
  o.signal.addEventListener('abort', onAbort, { once: true });
  const check = (csr: V1CertificateSigningRequest): void => {
    const out = requestOutcome(csr);
    if (out.state === 'issued') settle({ ok: out.certPem });
    else if (out.state === 'refused') settle({ err: new KnodeError('CSR_REFUSED', out.message) });
  };
  const timer = setTimeout(() => settle({ err: new KnodeError('CSR_TIMEOUT', `certificate signing request ${name} was not issued within ${Math.round(o.timeoutMs / 1000)} s (is it approved? kubectl get csr ${name})`) }), o.timeoutMs);
  const informer = startInformer<V1CertificateSigningRequest>({
    listWatch: restListWatch<V1CertificateSigningRequest>({ rest: client.rest, path: '/apis/certificates.k8s.io/v1/certificatesigningrequests' }),
    fieldSelector: `metadata.name=${name}`,
    signal: stop.signal,
    logger: o.logger.child({ part: 'csr-watch' }),
    onAdd: check,
    onUpdate: (_old, csr) => check(csr),
    onDelete: () => settle({ err: new KnodeError('CSR_REFUSED', `certificate signing request ${name} was deleted`) }),
  });
  try {
    const r = await result;
    if ('err' in r) throw r.err;
    return r.ok;
  } finally {
    clearTimeout(timer);
    o.signal.removeEventListener('abort', onAbort);
    stop.abort();
    await informer.done;
  }
}
