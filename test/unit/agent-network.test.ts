import t from 'tap';
import { mkdtemp, readFile, readdir, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { conflistName, writeConflistIfChanged } from '../../agent/network/cni-config.js';
import { parseFlags } from '../../agent/config/flags.js';
import { resolveConfig } from '../../agent/config/index.js';

t.test('writeConflistIfChanged writes atomically and only on change', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'knode-net-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const conf = join(dir, 'net.d');
  t.equal(await writeConflistIfChanged(conf, 'a\n'), true, 'first write (dir created)');
  const m1 = (await stat(join(conf, conflistName))).mtimeMs;
  t.equal(await writeConflistIfChanged(conf, 'a\n'), false, 'same content: no write');
  t.equal((await stat(join(conf, conflistName))).mtimeMs, m1);
  t.equal(await writeConflistIfChanged(conf, 'b\n'), true, 'new content');
  t.equal(await readFile(join(conf, conflistName), 'utf8'), 'b\n');
  t.same(await readdir(conf), [conflistName], 'no temp file left');
});

t.test('agent flags: --cni-conf-dir, --cgroup-root, --pod-logs-dir', async (t) => {
  const c = resolveConfig({ argv: ['--cni-conf-dir=/x/net.d', '--cgroup-root', '/lab/node-1', '--pod-logs-dir=/x/logs'], hostname: 'h' });
  if (c.help) throw new Error('unexpected help');
  t.equal(c.config.cniConfDir, '/x/net.d');
  t.equal(c.config.cgroupRoot, '/lab/node-1');
  t.equal(c.config.podLogsDir, '/x/logs');
  const d = resolveConfig({ argv: [], hostname: 'h' });
  if (d.help) throw new Error('unexpected help');
  t.equal(d.config.cniConfDir, '/etc/cni/net.d');
  t.equal(d.config.cgroupRoot, undefined);
  t.equal(d.config.podLogsDir, '/var/log/pods');
  const f = resolveConfig({ argv: ['--config=/c.yaml'], fileText: 'kind: KubeletConfiguration\ncgroupRoot: /from-file\npodLogsDir: /logs-from-file\n', hostname: 'h' });
  if (f.help) throw new Error('unexpected help');
  t.equal(f.config.cgroupRoot, '/from-file', 'cgroupRoot from the config file');
  t.equal(f.config.podLogsDir, '/logs-from-file', 'podLogsDir from the config file');
  t.match(parseFlags(['--cni-conf-dir=relative']).problems, [/--cni-conf-dir: "relative" must be an absolute path/]);
});
