/**
 * PKCS#10 certificate signing requests (RFC 2986) with node:crypto keys:
 * build one (subject CN + O, no extensions — what the kubelet sends for its
 * client certificate) and parse + verify one (what the apiserver validates
 * and what signers and approvers read). Pure apart from the crypto calls.
 */
import { createPublicKey, sign, verify } from 'node:crypto';
import type { KeyObject } from 'node:crypto';
import { KnodeError, errorMessage } from '../errors.js';
import { bitString, children, derNull, oid, pemDecodeAll, pemEncode, readBitString, readDer, readOid, readString, sequence, set, tlv, utf8String, integer } from './der.js';
import type { DerNode } from './der.js';

export const oids = {
  commonName: '2.5.4.3',
  organization: '2.5.4.10',
  ecdsaWithSHA256: '1.2.840.10045.4.3.2',
  ecdsaWithSHA384: '1.2.840.10045.4.3.3',
  ecdsaWithSHA512: '1.2.840.10045.4.3.4',
  sha256WithRSA: '1.2.840.113549.1.1.11',
  sha384WithRSA: '1.2.840.113549.1.1.12',
  sha512WithRSA: '1.2.840.113549.1.1.13',
  ed25519: '1.3.101.112',
  extensionRequest: '1.2.840.113549.1.9.14',
  subjectAltName: '2.5.29.17',
} as const;

export interface Subject {
  commonName?: string;
  organizations: string[];
}

/** An X.501 Name: O attributes first, then CN (Go's pkix order), one attribute per RDN. */
export function encodeName(subject: Subject): Buffer {
  const rdn = (type: string, value: string): Buffer => set(sequence(oid(type), utf8String(value)));
  return sequence(
    ...subject.organizations.map((o) => rdn(oids.organization, o)),
    ...(subject.commonName !== undefined ? [rdn(oids.commonName, subject.commonName)] : []),
  );
}

export function decodeName(node: DerNode): Subject {
  const subject: Subject = { organizations: [] };
  for (const rdn of children(node)) {
    for (const atv of children(rdn)) {
      const [type, value] = children(atv);
      if (!type || !value) throw new KnodeError('DER_INVALID', 'invalid name attribute');
      const t = readOid(type);
      if (t === oids.commonName) subject.commonName = readString(value);
      else if (t === oids.organization) subject.organizations.push(readString(value));
    }
  }
  return subject;
}

/** The signature algorithm for a private key: its AlgorithmIdentifier and node:crypto's digest name. */
export function signatureAlgorithm(key: KeyObject): { algId: Buffer; digest: string | null } {
  switch (key.asymmetricKeyType) {
    case 'ec':
      return { algId: sequence(oid(oids.ecdsaWithSHA256)), digest: 'sha256' };
    case 'rsa':
      return { algId: sequence(oid(oids.sha256WithRSA), derNull()), digest: 'sha256' };
    case 'ed25519':
      return { algId: sequence(oid(oids.ed25519)), digest: null };
    default:
      throw new KnodeError('KEY_UNSUPPORTED', `unsupported key type ${key.asymmetricKeyType ?? 'unknown'}`);
  }
}

function digestOf(algOid: string): string | null {
  switch (algOid) {
    case oids.ecdsaWithSHA256:
    case oids.sha256WithRSA:
      return 'sha256';
    case oids.ecdsaWithSHA384:
    case oids.sha384WithRSA:
      return 'sha384';
    case oids.ecdsaWithSHA512:
    case oids.sha512WithRSA:
      return 'sha512';
    case oids.ed25519:
      return null;
    default:
      throw new KnodeError('CSR_INVALID', `unsupported signature algorithm ${algOid}`);
  }
}

/** A PEM "CERTIFICATE REQUEST" for `subject`, signed with `privateKey` (public part derived from it). */
export function createCsr(privateKey: KeyObject, subject: Subject): string {
  const spki = createPublicKey(privateKey).export({ type: 'spki', format: 'der' });
  const info = sequence(integer(0), encodeName(subject), spki, tlv(0xa0, Buffer.alloc(0)));
  const { algId, digest } = signatureAlgorithm(privateKey);
  const sig = sign(digest, info, privateKey);
  return pemEncode('CERTIFICATE REQUEST', sequence(info, algId, bitString(sig)));
}

export interface ParsedCsr {
  subject: Subject;
  /** The DER of the subject Name, to copy into a certificate verbatim. */
  subjectDer: Buffer;
  /** The DER of the SubjectPublicKeyInfo. */
  publicKeyDer: Buffer;
  publicKey: KeyObject;
  /** OIDs of the requested extensions (extensionRequest attribute). */
  extensionOids: string[];
}

/**
 * Parses a PEM CSR and checks its self-signature. Throws KnodeError
 * CSR_INVALID with the reason when it is not exactly one valid request.
 */
export function parseCsr(pem: string): ParsedCsr {
  const blocks = pemDecodeAll(pem, ['CERTIFICATE REQUEST', 'NEW CERTIFICATE REQUEST']);
  if (blocks.length !== 1) throw new KnodeError('CSR_INVALID', blocks.length === 0 ? 'PEM block type must be CERTIFICATE REQUEST' : 'must contain exactly one CERTIFICATE REQUEST');
  try {
    const root = readDer(blocks[0]!);
    const [info, alg, sig] = children(root);
    if (!info || !alg || !sig) throw new KnodeError('CSR_INVALID', 'not a CertificationRequest');
    const [version, name, spki, attrs] = children(info);
    if (!version || !name || !spki) throw new KnodeError('CSR_INVALID', 'not a CertificationRequestInfo');
    const publicKey = createPublicKey({ key: spki.raw, format: 'der', type: 'spki' });
    const digest = digestOf(readOid(children(alg)[0]!));
    if (!verify(digest, info.raw, publicKey, readBitString(sig))) throw new KnodeError('CSR_INVALID', 'the signature of the request does not verify');
    const extensionOids: string[] = [];
    for (const attr of attrs ? children(attrs) : []) {
      const [type, values] = children(attr);
      if (!type || !values || readOid(type) !== oids.extensionRequest) continue;
      for (const exts of children(values)) for (const ext of children(exts)) extensionOids.push(readOid(children(ext)[0]!));
    }
    return { subject: decodeName(name), subjectDer: name.raw, publicKeyDer: spki.raw, publicKey, extensionOids };
  } catch (err) {
    if (err instanceof KnodeError && err.code === 'CSR_INVALID') throw err;
    throw new KnodeError('CSR_INVALID', `cannot parse the certificate request: ${errorMessage(err)}`, { cause: err });
  }
}
