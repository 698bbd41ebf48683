/** Content digests as OCI writes them: 'sha256:<64 hex>'. */
import { createHash } from 'node:crypto';
import { KnodeError } from '../errors.js';

export function sha256Digest(data: Uint8Array): string {
  return 'sha256:' + createHash('sha256').update(data).digest('hex');
}

/** The hex part of a sha256 digest (the blob's file name in an OCI layout). */
export function digestHex(digest: string): string {
  const m = /^sha256:([0-9a-f]{64})$/.exec(digest);
  if (m === null) throw new KnodeError('OCI_BAD_DIGEST', `not a sha256 digest: ${digest}`);
  return m[1]!;
}
