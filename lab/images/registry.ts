/**
 * Local image registries for the lab: Debian's docker-registry (distribution
 * 2.8), plain or with htpasswd basic auth, over plain HTTP.
 *
 * Design notes: each registry has a name and a run dir (<registry.runDir>/
 * <name>) holding its config.yml, htpasswd, pid file, state and log. The
 * daemon is started detached (its own session) so that it outlives the CLI;
 * when `netnsPath` is given it is started through `nsenter --net=<path>`
 * (network namespace only: nsenter execs the registry, so the pid is the
 * registry's). `startRegistry` is idempotent: an instance that is alive,
 * answers `GET /v2/` and runs the same config is left alone; otherwise it is
 * (re)started. A pid is only trusted when /proc/<pid>/cmdline still names
 * docker-registry and our config file, so a recycled pid is never signalled.
 * Long-running daemons cannot go through lib/exec.ts (which waits for exit),
 * so this module spawns them itself, with argument arrays and no shell.
 */
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { closeSync, openSync } from 'node:fs';
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { execFile } from '../../lib/exec.js';
import { KnodeError, errnoCode } from '../../lib/errors.js';
import { createLogger, type Logger } from '../../lib/log.js';
import { registry as registryDefaults } from '../paths.js';

export const registryBinary = '/usr/bin/docker-registry';

export interface RegistryAuth {
  user: string;
  password: string;
}

export interface RegistryOptions {
  name: string;
  /** 'host:port' the registry listens on (inside netnsPath when given). */
  listen: string;
  storageDir: string;
  auth?: RegistryAuth;
  /** Start inside this network namespace (e.g. /var/run/netns/knode-underlay). */
  netnsPath?: string;
  /** Parent of the per-registry run dirs; default registry.runDir of lab/paths.ts. */
  runDir?: string;
  logger?: Logger;
  /** How long to wait for `GET /v2/` to answer; default 15 s. */
  readyTimeoutMs?: number;
}

export interface RegistryStatus {
  name: string;
  running: boolean;
  /** `GET /v2/` answered 200 (no auth) or 401 (auth). */
  healthy: boolean;
  pid?: number;
  listen?: string;
  auth?: boolean;
  netnsPath?: string;
  runDir: string;
  logFile: string;
}

interface RegistryState {
  name: string;
  pid: number;
  listen: string;
  storageDir: string;
  auth: boolean;
  netnsPath?: string;
  configHash: string;
}

function registryRunDir(name: string, runDir?: string): string {
  if (!/^[a-z0-9][a-z0-9-]*$/.test(name)) throw new KnodeError('REGISTRY_BAD_NAME', `registry name ${JSON.stringify(name)} must be [a-z0-9-]+`);
  return join(runDir ?? registryDefaults.runDir, name);
}

export function splitListen(listen: string): { host: string; port: number } {
  const m = /^(\[[0-9a-fA-F:.]+\]|[^:[\]]*):(\d{1,5})$/.exec(listen);
  const port = m === null ? NaN : Number(m[2]);
  if (m === null || port < 1 || port > 65535) throw new KnodeError('REGISTRY_BAD_LISTEN', `listen address ${listen} must be host:port`);
  return { host: m[1]!, port };
}

/** Address a client uses to reach a registry listening on `listen` (wildcards → loopback). */
export function probeAddress(listen: string): string {
  const { host, port } = splitListen(listen);
  const h = host === '' || host === '0.0.0.0' ? '127.0.0.1' : host === '[::]' ? '[::1]' : host;
  return `${h}:${port}`;
}

/** The registry's config.yml (pure). */
export function renderRegistryConfig(options: { name: string; listen: string; storageDir: string; htpasswdPath?: string }): string {
  splitListen(options.listen);
  const config: Record<string, unknown> = {
    version: 0.1,
    log: { level: 'info', formatter: 'text', fields: { service: 'registry', instance: options.name } },
    storage: {
      filesystem: { rootdirectory: options.storageDir },
      cache: { blobdescriptor: 'inmemory' },
      delete: { enabled: true },
      // Several instances may share one storage dir: uploads are not shared across them.
      maintenance: { uploadpurging: { enabled: false } },
    },
    http: {
      addr: options.listen,
      // Fixed so that restarts keep upload state valid (a lab secret, not a credential).
      secret: `knode-lab-${options.name}`,
      headers: { 'X-Content-Type-Options': ['nosniff'] },
    },
  };
  if (options.htpasswdPath !== undefined) config.auth = { htpasswd: { realm: `knode-${options.name}`, path: options.htpasswdPath } };
  return stringify(config);
}

async function readState(dir: string): Promise<RegistryState | undefined> {
  try {
    return JSON.parse(await readFile(join(dir, 'state.json'), 'utf8')) as RegistryState;
  } catch (err) {
    if (errnoCode(err) === 'ENOENT' || err instanceof SyntaxError) return undefined;
    throw err;
  }
}

/** True when pid is a live (non-zombie) docker-registry serving configPath. */
async function isOurProcess(pid: number, configPath: string): Promise<boolean> {
  try {
    const [cmdline, stat] = await Promise.all([readFile(`/proc/${pid}/cmdline`, 'utf8'), readFile(`/proc/${pid}/stat`, 'utf8')]);
    const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
    const args = cmdline.split('\0');
    return state !== 'Z' && state !== 'X' && args.some((a) => a.endsWith('docker-registry')) && args.includes(configPath);
  } catch (err) {
    if (errnoCode(err) === 'ENOENT' || errnoCode(err) === 'ESRCH') return false;
    throw err;
  }
}

/** HTTP status of GET /v2/ (0 when nothing answers), from inside netnsPath when given. */
export async function probeRegistry(listen: string, netnsPath?: string): Promise<number> {
  const url = `http://${probeAddress(listen)}/v2/`;
  if (netnsPath !== undefined) {
    const r = await execFile('nsenter', [`--net=${netnsPath}`, 'curl', '-s', '-o', '/dev/null', '-w', '%{http_code}', '--max-time', '2', url], {
      allowFailure: true,
    });
    const code = Number(r.stdout.trim());
    return Number.isInteger(code) ? code : 0;
  }
  try {
    const res = await fetch(url, { signal: AbortSignal.timeout(2000) });
    await res.arrayBuffer();
    return res.status;
  } catch {
    return 0;
  }
}

function healthyStatus(code: number, auth: boolean): boolean {
  return auth ? code === 401 : code === 200;
}

/** Keep an existing htpasswd when it already verifies the password (bcrypt salts differ per run). */
async function ensureHtpasswd(path: string, auth: RegistryAuth): Promise<void> {
  const existing = await readFile(path, 'utf8').catch((err: unknown) => {
    if (errnoCode(err) === 'ENOENT') return undefined;
    throw err;
  });
  if (existing !== undefined) {
    const ok = await execFile('htpasswd', ['-vb', path, auth.user, auth.password], { allowFailure: true });
    if (ok.code === 0 && existing.split('\n').filter((l) => l !== '').length === 1) return;
  }
  const { stdout } = await execFile('htpasswd', ['-Bbn', auth.user, auth.password]);
  await writeFile(path, stdout.trim() + '\n', { mode: 0o600 });
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

async function tail(path: string, lines = 20): Promise<string> {
  const text = await readFile(path, 'utf8').catch(() => '');
  return text.split('\n').slice(-lines).join('\n');
}

export async function registryStatus(name: string, options: { runDir?: string } = {}): Promise<RegistryStatus> {
  const dir = registryRunDir(name, options.runDir);
  const logFile = join(dir, 'registry.log');
  const state = await readState(dir);
  if (state === undefined) return { name, running: false, healthy: false, runDir: dir, logFile };
  const running = await isOurProcess(state.pid, join(dir, 'config.yml'));
  const healthy = running && healthyStatus(await probeRegistry(state.listen, state.netnsPath), state.auth);
  return {
    name,
    running,
    healthy,
    ...(running ? { pid: state.pid } : {}),
    listen: state.listen,
    auth: state.auth,
    ...(state.netnsPath !== undefined ? { netnsPath: state.netnsPath } : {}),
    runDir: dir,
    logFile,
  };
}

/** What startRegistry did: `started` is false when a healthy instance was left alone. */
export type StartedRegistry = RegistryStatus & { started: boolean };

export async function startRegistry(options: RegistryOptions): Promise<StartedRegistry> {
  const logger = options.logger ?? createLogger({ component: 'registry' });
  const dir = registryRunDir(options.name, options.runDir);
  await mkdir(dir, { recursive: true });
  await mkdir(options.storageDir, { recursive: true });
  const configPath = join(dir, 'config.yml');
  const htpasswdPath = join(dir, 'htpasswd');
  if (options.auth !== undefined) await ensureHtpasswd(htpasswdPath, options.auth);
  const config = renderRegistryConfig({
    name: options.name,
    listen: options.listen,
    storageDir: options.storageDir,
    ...(options.auth !== undefined ? { htpasswdPath } : {}),
  });
  const htpasswd = options.auth !== undefined ? await readFile(htpasswdPath, 'utf8') : '';
  const configHash = createHash('sha256')
    .update(JSON.stringify([config, htpasswd, options.netnsPath ?? '']))
    .digest('hex');

  const current = await readState(dir);
  if (current !== undefined && (await isOurProcess(current.pid, configPath))) {
    const healthy = healthyStatus(await probeRegistry(current.listen, current.netnsPath), current.auth);
    if (healthy && current.configHash === configHash) {
      logger.debug('registry already running', { name: options.name, pid: current.pid, listen: current.listen });
      return { ...(await registryStatus(options.name, { runDir: options.runDir })), started: false };
    }
    logger.info('restarting registry', { name: options.name, pid: current.pid, healthy, configChanged: current.configHash !== configHash });
    await stopRegistry(options.name, { runDir: options.runDir, logger });
  }

  await writeFile(configPath, config);
  const logFile = join(dir, 'registry.log');
  const [file, args] =
    options.netnsPath !== undefined
      ? ['nsenter', [`--net=${options.netnsPath}`, registryBinary, 'serve', configPath]]
      : [registryBinary, ['serve', configPath]];
  const fd = openSync(logFile, 'a');
  let pid: number | undefined;
  let exited: string | undefined;
  try {
    const child = spawn(file, args, { detached: true, stdio: ['ignore', fd, fd], cwd: dir });
    child.on('exit', (code, signal) => {
      exited = signal ?? `exit code ${code}`;
    });
    await new Promise<void>((resolve, reject) => {
      child.once('spawn', resolve);
      child.once('error', (err) => reject(new KnodeError('REGISTRY_START_FAILED', `cannot run ${file}: ${err.message}`, { cause: err })));
    });
    child.unref();
    pid = child.pid;
  } finally {
    closeSync(fd);
  }
  if (pid === undefined) throw new KnodeError('REGISTRY_START_FAILED', `${file} has no pid`);
  const state: RegistryState = {
    name: options.name,
    pid,
    listen: options.listen,
    storageDir: options.storageDir,
    auth: options.auth !== undefined,
    ...(options.netnsPath !== undefined ? { netnsPath: options.netnsPath } : {}),
    configHash,
  };
  await writeFile(join(dir, 'registry.pid'), `${pid}\n`);
  await writeFile(join(dir, 'state.json'), JSON.stringify(state, null, 2) + '\n');

  const deadline = Date.now() + (options.readyTimeoutMs ?? 15_000);
  let code = 0;
  while (Date.now() < deadline) {
    if (exited !== undefined) break;
    code = await probeRegistry(options.listen, options.netnsPath);
    if (healthyStatus(code, state.auth)) {
      logger.info('registry started', { name: options.name, pid, listen: options.listen, auth: state.auth, netns: options.netnsPath });
      return { ...(await registryStatus(options.name, { runDir: options.runDir })), started: true };
    }
    await sleep(100);
  }
  const why = exited !== undefined ? `exited (${exited})` : `GET /v2/ answered ${code} after ${options.readyTimeoutMs ?? 15_000} ms`;
  await stopRegistry(options.name, { runDir: options.runDir, logger });
  throw new KnodeError('REGISTRY_START_FAILED', `registry ${options.name} on ${options.listen} ${why}; log:\n${await tail(logFile)}`, {
    details: { name: options.name, listen: options.listen, logFile },
  });
}

/** Stop a registry started by startRegistry; returns whether one was running. Idempotent. */
export async function stopRegistry(name: string, options: { runDir?: string; logger?: Logger; timeoutMs?: number } = {}): Promise<boolean> {
  const logger = options.logger ?? createLogger({ component: 'registry' });
  const dir = registryRunDir(name, options.runDir);
  const state = await readState(dir);
  let wasRunning = false;
  if (state !== undefined && (await isOurProcess(state.pid, join(dir, 'config.yml')))) {
    wasRunning = true;
    const signal = (sig: NodeJS.Signals): void => {
      try {
        process.kill(state.pid, sig);
      } catch (err) {
        if (errnoCode(err) !== 'ESRCH') throw err;
      }
    };
    signal('SIGTERM');
    const deadline = Date.now() + (options.timeoutMs ?? 5000);
    while (Date.now() < deadline && (await isOurProcess(state.pid, join(dir, 'config.yml')))) await sleep(50);
    if (await isOurProcess(state.pid, join(dir, 'config.yml'))) {
      signal('SIGKILL');
      const killDeadline = Date.now() + 5000;
      while (await isOurProcess(state.pid, join(dir, 'config.yml'))) {
        if (Date.now() > killDeadline) throw new KnodeError('REGISTRY_STOP_FAILED', `registry ${name} (pid ${state.pid}) survives SIGKILL`);
        await sleep(50);
      }
    }
    logger.info('registry stopped', { name, pid: state.pid });
  }
  await rm(join(dir, 'registry.pid'), { force: true });
  await rm(join(dir, 'state.json'), { force: true });
  return wasRunning;
}

export type DefaultRegistryName = 'plain' | 'auth';
export const defaultRegistryNames: readonly DefaultRegistryName[] = ['plain', 'auth'];

/** The lab's two registries (lab/paths.ts `registry`), sharing one storage dir. */
export function defaultRegistryOptions(name: DefaultRegistryName): RegistryOptions {
  if (name === 'plain') {
    return { name, listen: `${registryDefaults.plain.host}:${registryDefaults.plain.port}`, storageDir: registryDefaults.storageDir };
  }
  const a = registryDefaults.auth;
  return { name, listen: `${a.host}:${a.port}`, storageDir: registryDefaults.storageDir, auth: { user: a.user, password: a.password } };
}
