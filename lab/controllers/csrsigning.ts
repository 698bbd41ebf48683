/**
 * csrsigning: the `kubernetes.io/kube-apiserver-client-kubelet` signer of
 * kube-controller-manager (--cluster-signing-cert-file/-key-file,
 * --cluster-signing-duration): signs approved requests with the cluster CA
 * (lib/x509/certificate.ts) and writes status.certificate; an approved
 * request that is not a valid kubelet client request gets a Failed
 * condition. Decisions: csr-logic.ts.
 */
import { readFile } from 'node:fs/promises';
import type { Controller, ControllerContext } from './context.js';
import { waitForSync } from './context.js';
import { apiReason } from './client.js';
import { signingPlan } from './csr-logic.js';
import { WorkQueue } from './queue.js';
import type { CertificateSigningRequest } from './types.js';
import { issueCertificate } from '../../lib/x509/certificate.js';

const csrPath = '/apis/certificates.k8s.io/v1/certificatesigningrequests';

export interface SigningOptions {
  certFile: string;
  keyFile: string;
  /** --cluster-signing-duration; upstream's default is one year. */
  durationSeconds: number;
}

export class CsrSigningController implements Controller {
  readonly name = 'csrsigning';
  private readonly queue: WorkQueue;

  constructor(
    private readonly ctx: ControllerContext,
    private readonly options: SigningOptions,
  ) {
    this.queue = new WorkQueue({ name: this.name, logger: ctx.logger });
    ctx.informers.csrs.on({
      add: (c) => this.queue.add(c.metadata.name ?? ''),
      update: (_o, c) => this.queue.add(c.metadata.name ?? ''),
      delete: () => undefined,
    });
  }

  private async writeStatus(csr: CertificateSigningRequest, status: CertificateSigningRequest['status']): Promise<void> {
    try {
      await this.ctx.client.update(`${csrPath}/${csr.metadata.name ?? ''}/status`, { ...csr, status });
    } catch (err) {
      if (apiReason(err) === 'NotFound') return;
      throw err;
    }
  }

  private async sync(name: string): Promise<void> {
    const csr = this.ctx.informers.csrs.get(name);
    if (!csr) return;
    const plan = signingPlan(csr, this.options.durationSeconds, Date.now());
    if (plan.action === 'skip') return;
    if (plan.action === 'fail') {
      const now = new Date().toISOString().replace(/\.\d+Z$/, 'Z');
      const conditions = [...(csr.status?.conditions ?? []), { type: 'Failed', status: 'True', reason: 'SignerValidationFailure', message: plan.message, lastUpdateTime: now, lastTransitionTime: now }];
      await this.writeStatus(csr, { ...csr.status, conditions });
      this.ctx.logger.warn('csr not signed', { csr: name, why: plan.message });
      return;
    }
    // Read on every signing: a rotated CA on disk is picked up.
    const [caCertPem, caKeyPem] = await Promise.all([readFile(this.options.certFile, 'utf8'), readFile(this.options.keyFile, 'utf8')]);
    const pem = issueCertificate({ csr: plan.parsed, caCertPem, caKeyPem, notBefore: plan.notBefore, notAfter: plan.notAfter, usages: csr.spec.usages ?? [] });
    await this.writeStatus(csr, { ...csr.status, certificate: Buffer.from(pem).toString('base64') });
    this.ctx.logger.info('csr signed', { csr: name, subject: plan.parsed.subject.commonName, notAfter: plan.notAfter.toISOString() });
  }

  async run(signal: AbortSignal): Promise<void> {
    if (!(await waitForSync([this.ctx.informers.csrs], signal))) return;
    await this.queue.run((key) => this.sync(key), signal);
  }
}
