/**
 * The kubelet server's serving certificate: the files named by
 * --tls-cert-file/--tls-private-key-file, else a self-signed one made once in
 * <root-dir>/pki (kubelet.crt/kubelet.key, as upstream's --cert-dir), for the
 * node name and its addresses, with openssl (ECDSA P-256).
 */
import { existsSync } from 'node:fs';
import { chmod, mkdir, readFile } from 'node:fs/promises';
import { isIP } from 'node:net';
import { join } from 'node:path';
import { execFile } from '../../lib/exec.js';

export interface ServingCert {
  cert: string;
  key: string;
  certFile: string;
}

export async function loadServingCert(o: { certFile?: string | undefined; keyFile?: string | undefined; rootDir: string; nodeName: string; addresses: string[] }): Promise<ServingCert> {
  let certFile = o.certFile;
  let keyFile = o.keyFile;
  if (certFile === undefined || keyFile === undefined) {
    const dir = join(o.rootDir, 'pki');
    certFile = join(dir, 'kubelet.crt');
    keyFile = join(dir, 'kubelet.key');
    if (!existsSync(certFile) || !existsSync(keyFile)) {
      await mkdir(dir, { recursive: true, mode: 0o700 });
      const sans = [...new Set([o.nodeName, 'localhost', '127.0.0.1', ...o.addresses])].map((s) => (isIP(s) ? `IP:${s}` : `DNS:${s}`)).join(',');
      await execFile('openssl', [
        'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
        '-keyout', keyFile, '-out', certFile, '-days', '365',
        '-subj', `/CN=${o.nodeName}@${Math.floor(Date.now() / 1000)}`,
        '-addext', `subjectAltName=${sans}`,
        '-addext', 'extendedKeyUsage=serverAuth',
      ]);
      await chmod(keyFile, 0o600);
    }
  }
  return { cert: await readFile(certFile, 'utf8'), key: await readFile(keyFile, 'utf8'), certFile };
}
