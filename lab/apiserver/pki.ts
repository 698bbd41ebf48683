/**
 * The lab's PKI, made with `openssl` (through lib/exec.ts): a CA, the
 * apiserver's serving certificate (127.0.0.1, localhost + extra SANs) and
 * client certificates (admin in system:masters, one per node in system:nodes).
 * ECDSA P-256 keys: fast to make, accepted by Go clients and Node. Files live in
 * `<dataDir>/pki`; existing ones are reused so kubeconfigs survive restarts
 * (the serving certificate is remade when its SANs change).
 */
import { chmod, mkdir, readFile, rm, writeFile, mkdtemp } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { randomBytes } from 'node:crypto';
import { execFile } from '../../lib/exec.js';

export interface CertPair {
  certFile: string;
  keyFile: string;
  cert: string;
  key: string;
}

export interface Pki {
  dir: string;
  ca: CertPair;
  serving: CertPair;
}

const curve = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];

function isIP(s: string): boolean {
  return /^\d{1,3}(\.\d{1,3}){3}$/.test(s) || s.includes(':');
}

async function readPair(certFile: string, keyFile: string): Promise<CertPair> {
  return { certFile, keyFile, cert: await readFile(certFile, 'utf8'), key: await readFile(keyFile, 'utf8') };
}

async function withTemp<T>(fn: (dir: string) => Promise<T>): Promise<T> {
  const dir = await mkdtemp(join(tmpdir(), 'knode-pki-'));
  try {
    return await fn(dir);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

async function ensureCA(dir: string): Promise<CertPair> {
  const certFile = join(dir, 'ca.crt');
  const keyFile = join(dir, 'ca.key');
  if (existsSync(certFile) && existsSync(keyFile)) return readPair(certFile, keyFile);
  await withTemp(async (tmp) => {
    const cnf = join(tmp, 'ca.cnf');
    await writeFile(
      cnf,
      [
        '[req]',
        'distinguished_name = dn',
        'prompt = no',
        '[dn]',
        'CN = knode-lab-ca',
        '[v3_ca]',
        'basicConstraints = critical,CA:TRUE',
        'keyUsage = critical,keyCertSign,cRLSign,digitalSignature',
        'subjectKeyIdentifier = hash',
        '',
      ].join('\n'),
    );
    await execFile('openssl', ['req', '-x509', '-new', '-config', cnf, '-extensions', 'v3_ca', ...curve, '-keyout', keyFile, '-out', certFile, '-days', '3650']);
  });
  await chmod(keyFile, 0o600);
  return readPair(certFile, keyFile);
}

interface LeafSpec {
  name: string;
  subject: string;
  usage: 'serverAuth' | 'clientAuth';
  sans?: string[];
}

async function issue(dir: string, ca: CertPair, spec: LeafSpec): Promise<CertPair> {
  const certFile = join(dir, `${spec.name}.crt`);
  const keyFile = join(dir, `${spec.name}.key`);
  await withTemp(async (tmp) => {
    const csr = join(tmp, 'leaf.csr');
    const ext = join(tmp, 'ext.cnf');
    const lines = [
      '[ext]',
      'basicConstraints = critical,CA:FALSE',
      'keyUsage = critical,digitalSignature,keyEncipherment',
      `extendedKeyUsage = ${spec.usage}`,
      'authorityKeyIdentifier = keyid',
    ];
    if (spec.sans?.length) lines.push(`subjectAltName = ${spec.sans.map((s) => (isIP(s) ? `IP:${s}` : `DNS:${s}`)).join(',')}`);
    await writeFile(ext, lines.join('\n') + '\n');
    await execFile('openssl', ['req', '-new', ...curve, '-keyout', keyFile, '-out', csr, '-subj', spec.subject]);
    await execFile('openssl', [
      'x509',
      '-req',
      '-in',
      csr,
      '-CA',
      ca.certFile,
      '-CAkey',
      ca.keyFile,
      '-set_serial',
      `0x${randomBytes(12).toString('hex')}`,
      '-days',
      '825',
      '-out',
      certFile,
      '-extfile',
      ext,
      '-extensions',
      'ext',
    ]);
  });
  await chmod(keyFile, 0o600);
  return readPair(certFile, keyFile);
}

export async function ensurePki(dataDir: string, extraSANs: string[] = []): Promise<Pki> {
  const dir = join(dataDir, 'pki');
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const ca = await ensureCA(dir);
  const sans = [...new Set(['127.0.0.1', 'localhost', 'kubernetes', 'kubernetes.default', 'kubernetes.default.svc', ...extraSANs])];
  const sansFile = join(dir, 'apiserver.sans');
  const want = sans.join(',');
  let serving: CertPair;
  const have = existsSync(sansFile) ? (await readFile(sansFile, 'utf8')).trim() : '';
  if (have === want && existsSync(join(dir, 'apiserver.crt')) && existsSync(join(dir, 'apiserver.key'))) {
    serving = await readPair(join(dir, 'apiserver.crt'), join(dir, 'apiserver.key'));
  } else {
    serving = await issue(dir, ca, { name: 'apiserver', subject: '/CN=kube-apiserver', usage: 'serverAuth', sans });
    await writeFile(sansFile, want + '\n');
  }
  return { dir, ca, serving };
}

/** A client certificate for `cn` in groups `orgs`, reused when present. */
export async function ensureClientCert(pki: Pki, name: string, cn: string, orgs: string[]): Promise<CertPair> {
  const certFile = join(pki.dir, `${name}.crt`);
  const keyFile = join(pki.dir, `${name}.key`);
  if (existsSync(certFile) && existsSync(keyFile)) return readPair(certFile, keyFile);
  const subject = [...orgs.map((o) => `/O=${o}`), `/CN=${cn}`].join('');
  return issue(pki.dir, pki.ca, { name, subject, usage: 'clientAuth' });
}

/**
 * A serving certificate (e.g. a lab node's kubelet) signed by the CA in
 * `pkiDir`, reused while its SANs stay the same. Does not touch the
 * apiserver's own certificate.
 */
export async function ensureServingCertIn(pkiDir: string, name: string, cn: string, sans: string[]): Promise<CertPair> {
  const ca = await readPair(join(pkiDir, 'ca.crt'), join(pkiDir, 'ca.key'));
  const certFile = join(pkiDir, `${name}.crt`);
  const keyFile = join(pkiDir, `${name}.key`);
  const sansFile = join(pkiDir, `${name}.sans`);
  const want = sans.join(',');
  const have = existsSync(sansFile) ? (await readFile(sansFile, 'utf8')).trim() : '';
  if (have === want && existsSync(certFile) && existsSync(keyFile)) return readPair(certFile, keyFile);
  const pair = await issue(pkiDir, ca, { name, subject: `/CN=${cn}`, usage: 'serverAuth', sans });
  await writeFile(sansFile, want + '\n');
  return pair;
}
