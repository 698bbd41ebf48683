/**
 * Issues an X.509 v3 certificate for a parsed CSR with a CA key (what a
 * Kubernetes CSR signer does): subject and public key from the request,
 * issuer and authority key id from the CA certificate, the validity given,
 * key usages and extended key usages from the CSR's spec.usages. Pure apart
 * from the crypto calls. (openssl x509 -req only takes whole days.)
 */
import { X509Certificate, createPrivateKey, randomBytes, sign } from 'node:crypto';
import { KnodeError } from '../errors.js';
import { bitString, boolean, children, explicit, integer, octetString, oid, pemDecodeAll, pemEncode, readDer, readOid, sequence, time, tlv } from './der.js';
import type { DerNode } from './der.js';
import { signatureAlgorithm } from './pkcs10.js';
import type { ParsedCsr } from './pkcs10.js';

/** Key usage bits (RFC 5280 4.2.1.3), by the names Kubernetes uses in spec.usages. */
const keyUsageBits: Record<string, number> = {
  'digital signature': 0,
  'content commitment': 1,
  'key encipherment': 2,
  'data encipherment': 3,
  'key agreement': 4,
  'cert sign': 5,
  'crl sign': 6,
};

const extKeyUsageOids: Record<string, string> = {
  'server auth': '1.3.6.1.5.5.7.3.1',
  'client auth': '1.3.6.1.5.5.7.3.2',
  'code signing': '1.3.6.1.5.5.7.3.3',
  'email protection': '1.3.6.1.5.5.7.3.4',
  'timestamping': '1.3.6.1.5.5.7.3.8',
  'ocsp signing': '1.3.6.1.5.5.7.3.9',
};

export const knownUsages = ['signing', ...Object.keys(keyUsageBits), ...Object.keys(extKeyUsageOids), 'any'];

function extension(id: string, critical: boolean, value: Buffer): Buffer {
  return sequence(oid(id), ...(critical ? [boolean(true)] : []), octetString(value));
}

/** The KeyUsage BIT STRING for a set of bit numbers (DER: trailing zero bits dropped). */
export function keyUsageBitString(bits: number[]): Buffer {
  if (bits.length === 0) return bitString(Buffer.alloc(0));
  const max = Math.max(...bits);
  const bytes = Buffer.alloc(Math.floor(max / 8) + 1);
  for (const b of bits) bytes[Math.floor(b / 8)]! |= 0x80 >> b % 8;
  return bitString(bytes, 7 - (max % 8));
}

interface CaParts {
  subjectDer: Buffer;
  subjectKeyId: Buffer | undefined;
  notAfter: Date;
}

function caParts(caCertPem: string): CaParts {
  const der = pemDecodeAll(caCertPem, ['CERTIFICATE'])[0];
  if (!der) throw new KnodeError('CA_INVALID', 'the CA certificate file holds no CERTIFICATE');
  const tbs = children(children(readDer(der))[0]!);
  const off = tbs[0]!.tag === 0xa0 ? 1 : 0;
  const subject = tbs[off + 4]!;
  let subjectKeyId: Buffer | undefined;
  const extsWrapper = tbs.find((n) => n.tag === 0xa3);
  if (extsWrapper) {
    for (const ext of children(children(extsWrapper)[0]!)) {
      const parts = children(ext);
      if (readOid(parts[0]!) === '2.5.29.14') subjectKeyId = readDer((parts[parts.length - 1] as DerNode).content).content;
    }
  }
  return { subjectDer: subject.raw, subjectKeyId, notAfter: new Date(new X509Certificate(der).validTo) };
}

export interface IssueOptions {
  csr: ParsedCsr;
  caCertPem: string;
  caKeyPem: string;
  notBefore: Date;
  notAfter: Date;
  /** spec.usages of the CSR. */
  usages: string[];
}

/** The PEM certificate; notAfter is capped at the CA's own notAfter, as upstream's signer does. */
export function issueCertificate(o: IssueOptions): string {
  const ca = caParts(o.caCertPem);
  const caKey = createPrivateKey(o.caKeyPem);
  const notAfter = o.notAfter.getTime() > ca.notAfter.getTime() ? ca.notAfter : o.notAfter;
  const bits = o.usages.filter((u) => u in keyUsageBits).map((u) => keyUsageBits[u]!);
  if (o.usages.includes('signing')) bits.push(0);
  const ekus = o.usages.filter((u) => u in extKeyUsageOids).map((u) => extKeyUsageOids[u]!);
  const serial = randomBytes(16);
  serial[0]! &= 0x7f;
  const exts = [
    ...(bits.length ? [extension('2.5.29.15', true, keyUsageBitString([...new Set(bits)]))] : []),
    ...(ekus.length ? [extension('2.5.29.37', false, sequence(...ekus.map(oid)))] : []),
    extension('2.5.29.19', true, sequence()),
    ...(ca.subjectKeyId ? [extension('2.5.29.35', false, sequence(tlv(0x80, ca.subjectKeyId)))] : []),
  ];
  const { algId, digest } = signatureAlgorithm(caKey);
  const tbs = sequence(
    explicit(0, integer(2)),
    integer(serial),
    algId,
    ca.subjectDer,
    sequence(time(o.notBefore), time(notAfter)),
    o.csr.subjectDer,
    o.csr.publicKeyDer,
    explicit(3, sequence(...exts)),
  );
  return pemEncode('CERTIFICATE', sequence(tbs, algId, bitString(sign(digest, tbs, caKey))));
}
