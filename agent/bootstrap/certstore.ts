/**
 * The kubelet's client certificate store (client-go util/certificate
 * FileStore) in <root-dir>/pki: each new pair is written to
 * kubelet-client-<timestamp>.pem (certificate, then key; mode 0600) and
 * kubelet-client-current.pem is switched to it by an atomic symlink rename.
 * Clients read the current file on every new connection, so a rotation swaps
 * credentials without restarting anything. Old pairs are pruned (the
 * previous one is kept).
 */
import { X509Certificate, createPrivateKey } from 'node:crypto';
import { mkdir, readFile, readdir, readlink, rename, rm, symlink, writeFile } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { KnodeError, errorMessage } from '../../lib/errors.js';
import { pemDecodeAll } from '../../lib/x509/der.js';
import type { Validity } from './rotation.js';

export const currentName = 'kubelet-client-current.pem';

export interface StoredPair {
  path: string;
  cert: X509Certificate;
  validity: Validity;
}

export function currentPath(certDir: string): string {
  return join(certDir, currentName);
}

function timestamp(d: Date): string {
  return d.toISOString().replace(/[-:]/g, '').replace('T', '-').replace(/\..*$/, '');
}

export function validityOf(cert: X509Certificate): Validity {
  return { notBefore: Date.parse(cert.validFrom), notAfter: Date.parse(cert.validTo) };
}

/** Parses a PEM holding the client certificate (first CERTIFICATE) and its private key; checks they belong together. */
export function parsePair(pem: string, where: string): { cert: X509Certificate; keyPem: string } {
  const certDer = pemDecodeAll(pem, ['CERTIFICATE'])[0];
  const keyMatch = /-----BEGIN (EC |RSA )?PRIVATE KEY-----[\s\S]*?-----END \1?PRIVATE KEY-----/.exec(pem);
  if (!certDer || !keyMatch) throw new KnodeError('CLIENT_CERT_INVALID', `${where}: needs a CERTIFICATE and a PRIVATE KEY`);
  let cert: X509Certificate;
  try {
    cert = new X509Certificate(certDer);
    if (!cert.checkPrivateKey(createPrivateKey(keyMatch[0]))) throw new Error('the private key does not match the certificate');
  } catch (err) {
    throw new KnodeError('CLIENT_CERT_INVALID', `${where}: ${errorMessage(err)}`, { cause: err });
  }
  return { cert, keyPem: keyMatch[0] };
}

/** The current pair, or undefined when there is none (or it cannot be used). */
export async function readCurrent(certDir: string): Promise<StoredPair | undefined> {
  const path = currentPath(certDir);
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch {
    return undefined;
  }
  const { cert } = parsePair(text, path);
  return { path, cert, validity: validityOf(cert) };
}

/** Writes a new pair and makes it current; returns the current path. */
export async function storePair(certDir: string, certPem: string, keyPem: string, now = new Date()): Promise<StoredPair> {
  const { cert } = parsePair(certPem + keyPem, 'the issued certificate');
  await mkdir(certDir, { recursive: true, mode: 0o700 });
  const name = `kubelet-client-${timestamp(now)}.pem`;
  const file = join(certDir, name);
  await writeFile(file, certPem.trimEnd() + '\n' + keyPem.trimEnd() + '\n', { mode: 0o600 });
  const link = currentPath(certDir);
  let previous: string | undefined;
  try {
    previous = basename(await readlink(link));
  } catch {
    previous = undefined;
  }
  const tmp = `${link}.tmp-${process.pid}`;
  await rm(tmp, { force: true });
  await symlink(name, tmp);
  await rename(tmp, link);
  // Keep the new pair and the one before it (a client mid-handshake may still read it).
  for (const f of await readdir(certDir)) {
    if (/^kubelet-client-\d{8}-\d{6}\.pem$/.test(f) && f !== name && f !== previous) await rm(join(certDir, f), { force: true });
  }
  return { path: link, cert, validity: validityOf(cert) };
}
