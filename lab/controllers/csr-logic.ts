/**
 * The decisions of the CSR approver and the kubelet-client signer, pure
 * (upstream pkg/controller/certificates/approver/sarapprove.go and
 * pkg/apis/certificates ValidateKubeletClientCSR):
 *
 * - A request for `kubernetes.io/kube-apiserver-client-kubelet` is a kubelet
 *   client request when its subject is O=system:nodes (only) and
 *   CN=system:node:<name>, it asks for no SANs, and its usages are digital
 *   signature + client auth (key encipherment allowed).
 * - The approver checks, by a SubjectAccessReview for the requester, the
 *   permission `create certificatesigningrequests/selfnodeclient` when the
 *   requester is the node itself (rotation), else `.../nodeclient`
 *   (bootstrap); allowed → Approved (AutoApproved), else left pending.
 * - The signer signs approved, not failed, not yet issued requests of its
 *   signer for min(spec.expirationSeconds, --cluster-signing-duration),
 *   backdated 5 minutes.
 */
import { parseCsr } from '../../lib/x509/pkcs10.js';
import type { ParsedCsr } from '../../lib/x509/pkcs10.js';
import { errorMessage } from '../../lib/errors.js';
import type { CertificateSigningRequest } from './types.js';

export const kubeletClientSigner = 'kubernetes.io/kube-apiserver-client-kubelet';
export const nodeUserPrefix = 'system:node:';

export function hasCondition(csr: CertificateSigningRequest, type: string): boolean {
  return (csr.status?.conditions ?? []).some((c) => c.type === type && (c.status ?? 'True') === 'True');
}

export function decodeRequest(csr: CertificateSigningRequest): ParsedCsr {
  return parseCsr(Buffer.from(csr.spec.request, 'base64').toString('utf8'));
}

const allowedUsages = new Set(['digital signature', 'key encipherment', 'client auth']);

/** Why `csr` is not a valid kubelet client request, or undefined when it is. */
export function kubeletClientProblem(csr: CertificateSigningRequest, parsed: ParsedCsr): string | undefined {
  const { commonName, organizations } = parsed.subject;
  if (organizations.length !== 1 || organizations[0] !== 'system:nodes') return 'subject organization is not system:nodes';
  if (!commonName || !commonName.startsWith(nodeUserPrefix) || commonName.length === nodeUserPrefix.length) return 'subject common name does not begin with system:node:';
  if (parsed.extensionOids.includes('2.5.29.17')) return 'subject alternative names are not allowed';
  const usages = csr.spec.usages ?? [];
  const bad = usages.find((u) => !allowedUsages.has(u));
  if (bad !== undefined) return `usage "${bad}" is not allowed`;
  if (!usages.includes('client auth') || !usages.includes('digital signature')) return 'usages must include digital signature and client auth';
  return undefined;
}

export type ApprovalPlan = { action: 'skip'; why: string } | { action: 'review'; subresource: 'selfnodeclient' | 'nodeclient' };

/** What the approver does with `csr`: nothing, or a SubjectAccessReview for one permission. */
export function approvalPlan(csr: CertificateSigningRequest): ApprovalPlan {
  if (hasCondition(csr, 'Approved') || hasCondition(csr, 'Denied')) return { action: 'skip', why: 'already decided' };
  if (csr.spec.signerName !== kubeletClientSigner) return { action: 'skip', why: `signer ${csr.spec.signerName} is not handled` };
  let parsed: ParsedCsr;
  try {
    parsed = decodeRequest(csr);
  } catch (err) {
    return { action: 'skip', why: errorMessage(err) };
  }
  const problem = kubeletClientProblem(csr, parsed);
  if (problem !== undefined) return { action: 'skip', why: problem };
  return { action: 'review', subresource: csr.spec.username === parsed.subject.commonName ? 'selfnodeclient' : 'nodeclient' };
}

/** The SubjectAccessReview body asking whether the requester holds the permission. */
export function approvalReview(csr: CertificateSigningRequest, subresource: string): unknown {
  return {
    apiVersion: 'authorization.k8s.io/v1',
    kind: 'SubjectAccessReview',
    spec: {
      user: csr.spec.username ?? '',
      ...(csr.spec.uid ? { uid: csr.spec.uid } : {}),
      groups: csr.spec.groups ?? [],
      ...(csr.spec.extra ? { extra: csr.spec.extra } : {}),
      resourceAttributes: { group: 'certificates.k8s.io', resource: 'certificatesigningrequests', verb: 'create', subresource },
    },
  };
}

export type SigningPlan = { action: 'skip' } | { action: 'fail'; message: string } | { action: 'sign'; parsed: ParsedCsr; notBefore: Date; notAfter: Date };

export const backdateMs = 5 * 60_000;

/** What the kubelet-client signer does with `csr` at `now`. */
export function signingPlan(csr: CertificateSigningRequest, clusterSigningDurationSeconds: number, now: number): SigningPlan {
  if (csr.spec.signerName !== kubeletClientSigner) return { action: 'skip' };
  if (!hasCondition(csr, 'Approved') || hasCondition(csr, 'Denied') || hasCondition(csr, 'Failed') || csr.status?.certificate) return { action: 'skip' };
  let parsed: ParsedCsr;
  try {
    parsed = decodeRequest(csr);
  } catch (err) {
    return { action: 'fail', message: errorMessage(err) };
  }
  const problem = kubeletClientProblem(csr, parsed);
  if (problem !== undefined) return { action: 'fail', message: `invalid kubelet client request: ${problem}` };
  const seconds = csr.spec.expirationSeconds === undefined ? clusterSigningDurationSeconds : Math.min(csr.spec.expirationSeconds, clusterSigningDurationSeconds);
  return { action: 'sign', parsed, notBefore: new Date(now - backdateMs), notAfter: new Date(now + seconds * 1000) };
}
