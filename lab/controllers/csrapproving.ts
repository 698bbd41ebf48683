/**
 * csrapproving: auto-approves kubelet client certificate requests (bootstrap
 * and rotation) whose requester holds the permission upstream checks, asked
 * through a SubjectAccessReview as kube-controller-manager does. Requests it
 * does not recognise or may not approve stay pending for an admin
 * (`kubectl certificate approve`). Decisions: csr-logic.ts.
 */
import type { Controller, ControllerContext } from './context.js';
import { waitForSync } from './context.js';
import { apiReason } from './client.js';
import { approvalPlan, approvalReview } from './csr-logic.js';
import { WorkQueue } from './queue.js';
import type { CertificateSigningRequest } from './types.js';

const csrPath = '/apis/certificates.k8s.io/v1/certificatesigningrequests';

export class CsrApprovingController implements Controller {
  readonly name = 'csrapproving';
  private readonly queue: WorkQueue;

  constructor(private readonly ctx: ControllerContext) {
    this.queue = new WorkQueue({ name: this.name, logger: ctx.logger });
    ctx.informers.csrs.on({
      add: (c) => this.queue.add(c.metadata.name ?? ''),
      update: (_o, c) => this.queue.add(c.metadata.name ?? ''),
      delete: () => undefined,
    });
  }

  private async sync(name: string): Promise<void> {
    const csr = this.ctx.informers.csrs.get(name);
    if (!csr) return;
    const plan = approvalPlan(csr);
    if (plan.action === 'skip') {
      this.ctx.logger.debug('csr not auto-approved', { csr: name, why: plan.why });
      return;
    }
    const review = await this.ctx.client.create<{ status?: { allowed?: boolean } }>('/apis/authorization.k8s.io/v1/subjectaccessreviews', approvalReview(csr, plan.subresource));
    if (review.status?.allowed !== true) {
      this.ctx.logger.info('csr left pending: requester may not ask for it', { csr: name, user: csr.spec.username, permission: `certificatesigningrequests/${plan.subresource}` });
      return;
    }
    const now = new Date().toISOString().replace(/\.\d+Z$/, 'Z');
    const approved: CertificateSigningRequest = {
      ...csr,
      status: {
        ...csr.status,
        conditions: [
          ...(csr.status?.conditions ?? []),
          { type: 'Approved', status: 'True', reason: 'AutoApproved', message: 'Auto approving kubelet client certificate after SubjectAccessReview.', lastUpdateTime: now, lastTransitionTime: now },
        ],
      },
    };
    try {
      await this.ctx.client.update(`${csrPath}/${name}/approval`, approved);
    } catch (err) {
      if (apiReason(err) === 'NotFound') return;
      throw err; // Conflict: the queue retries with the newer object
    }
    this.ctx.logger.info('csr approved', { csr: name, user: csr.spec.username });
  }

  async run(signal: AbortSignal): Promise<void> {
    if (!(await waitForSync([this.ctx.informers.csrs], signal))) return;
    await this.queue.run((key) => this.sync(key), signal);
  }
}
