/** The kubelet server's flags and config file fields (address, ports, serving certificate, client CA). */
import t from 'tap';
import { resolveConfig } from '../../agent/config/index.js';
import type { AgentConfig } from '../../agent/config/index.js';
import { isKnodeError } from '../../lib/errors.js';

function resolve(argv: string[], fileText?: string): AgentConfig {
  const r = resolveConfig({ argv: fileText === undefined ? argv : ['--config', '/k.yaml', ...argv], hostname: 'h', ...(fileText === undefined ? {} : { fileText }) });
  if (r.help) throw new Error('unexpected help');
  return r.config;
}

function problems(fn: () => unknown): string[] {
  try {
    fn();
  } catch (err) {
    if (isKnodeError(err, 'CONFIG_INVALID')) return err.details!.problems as string[];
    throw err;
  }
  throw new Error('expected CONFIG_INVALID');
}

t.test('defaults: 0.0.0.0:10250, healthz 127.0.0.1:10248, self-signed, no client CA', async (t) => {
  const c = resolve([]);
  t.same([c.address, c.port, c.healthzBindAddress, c.healthzPort, c.tlsCertFile, c.tlsPrivateKeyFile, c.clientCAFile], ['0.0.0.0', 10250, '127.0.0.1', 10248, undefined, undefined, undefined]);
});

t.test('flags', async (t) => {
  const c = resolve(['--address=10.0.0.1', '--port', '11250', '--healthz-port=0', '--healthz-bind-address', '::1', '--tls-cert-file=/p/c.crt', '--tls-private-key-file=/p/c.key', '--client-ca-file=/p/ca.crt']);
  t.same([c.address, c.port, c.healthzBindAddress, c.healthzPort, c.tlsCertFile, c.tlsPrivateKeyFile, c.clientCAFile], ['10.0.0.1', 11250, '::1', 0, '/p/c.crt', '/p/c.key', '/p/ca.crt']);
  t.match(problems(() => resolve(['--port=70000'])), [/--port: "70000" is not a port/]);
  t.match(problems(() => resolve(['--address=localhost'])), [/--address: "localhost" is not an IP address/]);
  t.match(problems(() => resolve(['--tls-cert-file=rel.crt', '--tls-private-key-file=/k'])), [/--tls-cert-file: "rel.crt" must be an absolute path/]);
  t.match(problems(() => resolve(['--tls-cert-file=/c.crt'])), [/--tls-cert-file and --tls-private-key-file go together/]);
});

t.test('config file fields; flags win', async (t) => {
  const file = ['address: 10.1.1.1', 'port: 12250', 'healthzPort: 12248', 'healthzBindAddress: 127.0.0.2', 'tlsCertFile: /f/c.crt', 'tlsPrivateKeyFile: /f/c.key', 'authentication:', '  x509:', '    clientCAFile: /f/ca.crt', ''].join('\n');
  const c = resolve([], file);
  t.same([c.address, c.port, c.healthzBindAddress, c.healthzPort, c.tlsCertFile, c.tlsPrivateKeyFile, c.clientCAFile], ['10.1.1.1', 12250, '127.0.0.2', 12248, '/f/c.crt', '/f/c.key', '/f/ca.crt']);
  t.equal(resolve(['--port=13250'], file).port, 13250);
  t.match(problems(() => resolve([], 'port: many\n')), [/port: "many" is not a port/]);
});
