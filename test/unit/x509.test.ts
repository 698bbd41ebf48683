/**
 * lib/x509: the DER encoder/reader, PKCS#10 requests (verified by
 * `openssl req -verify`, parsed back, tampering detected) and certificates
 * issued from them (verified by `openssl verify` against a CA made by openssl).
 */
import t from 'tap';
import { X509Certificate, createPrivateKey, generateKeyPairSync } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { execFile } from '../../lib/exec.js';
import { integer, oid, readDer, readOid, time } from '../../lib/x509/der.js';
import { keyUsageBitString as keyUsageBitStringForTest } from '../../lib/x509/certificate.js';
import { createCsr, parseCsr } from '../../lib/x509/pkcs10.js';
import { issueCertificate } from '../../lib/x509/certificate.js';
import { isKnodeError } from '../../lib/errors.js';

const dir = await mkdtemp(join(tmpdir(), 'knode-t-x509-'));
t.teardown(() => rm(dir, { recursive: true, force: true }));

t.test('DER primitives', async (t) => {
  t.equal(oid('1.2.840.10045.4.3.2').toString('hex'), '06082a8648ce3d040302');
  t.equal(readOid(readDer(oid('2.5.29.37'))), '2.5.29.37');
  t.equal(integer(0).toString('hex'), '020100');
  t.equal(integer(128).toString('hex'), '02020080');
  t.equal(integer(Buffer.from([0, 0, 0x7f])).toString('hex'), '02017f');
  t.equal(time(new Date('2026-11-23T13:29:11Z')).toString('latin1').slice(2), '261123132911Z');
  t.equal(time(new Date('2051-01-02T03:04:05Z')).toString('latin1').slice(2), '20510102030405Z');
  // digitalSignature alone: 03 02 07 80; digitalSignature + keyEncipherment: 03 02 05 a0
  t.equal(keyUsageBitStringForTest([0]).toString('hex'), '03020780');
  t.equal(keyUsageBitStringForTest([0, 2]).toString('hex'), '030205a0');
  t.throws(() => readDer(Buffer.from([0x30, 0x05, 0x01])), /truncated/);
});

t.test('a CSR verifies with openssl and parses back', async (t) => {
  const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
  const pem = createCsr(privateKey, { commonName: 'system:node:worker-1', organizations: ['system:nodes'] });
  const file = join(dir, 'node.csr');
  await writeFile(file, pem);
  const out = await execFile('openssl', ['req', '-in', file, '-verify', '-noout', '-subject', '-nameopt', 'RFC2253'], { allowFailure: true });
  t.equal(out.code, 0, out.stderr);
  t.match(out.stdout + out.stderr, /verify OK/i);
  t.match(out.stdout, /CN=system:node:worker-1,O=system:nodes/);
  const parsed = parseCsr(pem);
  t.same(parsed.subject, { commonName: 'system:node:worker-1', organizations: ['system:nodes'] });
  t.same(parsed.extensionOids, []);
  // An RSA key and an openssl-made CSR with a SAN parse too.
  const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey;
  t.equal(parseCsr(createCsr(rsa, { commonName: 'x', organizations: [] })).subject.commonName, 'x');
  await execFile('openssl', ['req', '-new', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', join(dir, 'o.key'), '-out', join(dir, 'o.csr'), '-subj', '/O=a/O=b/CN=c', '-addext', 'subjectAltName=DNS:example.com']);
  const o = parseCsr(await readFile(join(dir, 'o.csr'), 'utf8'));
  t.same(o.subject, { commonName: 'c', organizations: ['a', 'b'] });
  t.same(o.extensionOids, ['2.5.29.17']);
});

t.test('bad CSRs are refused with CSR_INVALID', async (t) => {
  const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
  const pem = createCsr(privateKey, { commonName: 'system:node:a', organizations: ['system:nodes'] });
  const der = Buffer.from(pem.split('\n').slice(1, -2).join(''), 'base64');
  // Change one byte of the CN: the signature no longer verifies.
  const at = der.indexOf(Buffer.from('system:node:a'));
  der[at + 12] = 'b'.charCodeAt(0);
  const tampered = `-----BEGIN CERTIFICATE REQUEST-----\n${der.toString('base64')}\n-----END CERTIFICATE REQUEST-----\n`;
  for (const bad of ['', 'not pem', tampered, '-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n', pem + pem]) {
    let code: string | undefined;
    try {
      parseCsr(bad);
    } catch (err) {
      code = isKnodeError(err) ? err.code : String(err);
    }
    t.equal(code, 'CSR_INVALID', JSON.stringify(bad.slice(0, 40)));
  }
});

t.test('issued certificates verify against the CA with openssl', async (t) => {
  const caKey = join(dir, 'ca.key');
  const caCrt = join(dir, 'ca.crt');
  await execFile('openssl', ['req', '-x509', '-new', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', caKey, '-out', caCrt, '-subj', '/CN=test-ca', '-days', '2', '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign', '-addext', 'subjectKeyIdentifier=hash']);
  const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
  const csr = parseCsr(createCsr(privateKey, { commonName: 'system:node:w1', organizations: ['system:nodes'] }));
  const notBefore = new Date(Date.now() - 300_000);
  const pem = issueCertificate({
    csr,
    caCertPem: await readFile(caCrt, 'utf8'),
    caKeyPem: await readFile(caKey, 'utf8'),
    notBefore,
    notAfter: new Date(Date.now() + 3600_000),
    usages: ['digital signature', 'client auth'],
  });
  await writeFile(join(dir, 'leaf.crt'), pem);
  const v = await execFile('openssl', ['verify', '-purpose', 'sslclient', '-CAfile', caCrt, join(dir, 'leaf.crt')], { allowFailure: true });
  t.equal(v.code, 0, v.stdout + v.stderr);
  const cert = new X509Certificate(pem);
  t.match(cert.subject, /CN=system:node:w1/);
  t.match(cert.subject, /O=system:nodes/);
  t.ok(cert.checkPrivateKey(privateKey));
  t.ok(cert.verify(new X509Certificate(await readFile(caCrt, 'utf8')).publicKey));
  const text = (await execFile('openssl', ['x509', '-in', join(dir, 'leaf.crt'), '-noout', '-text'])).stdout;
  t.match(text, /TLS Web Client Authentication/);
  t.match(text, /Digital Signature/);
  t.match(text, /CA:FALSE/);
  // Capped at the CA's own notAfter.
  const long = new X509Certificate(
    issueCertificate({ csr, caCertPem: await readFile(caCrt, 'utf8'), caKeyPem: await readFile(caKey, 'utf8'), notBefore, notAfter: new Date(Date.now() + 10 * 86400_000), usages: ['client auth'] }),
  );
  t.ok(Date.parse(long.validTo) <= Date.parse(new X509Certificate(await readFile(caCrt, 'utf8')).validTo));
  t.ok(createPrivateKey(await readFile(caKey, 'utf8')));
});
