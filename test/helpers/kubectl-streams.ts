/**
 * Helpers for lab e2e tests of the kubelet's streams: kubectl with the lab's
 * admin kubeconfig (own timeout and environment), a long-running kubectl,
 * HTTP GET on a forwarded local port, and exec over WebSocket through the lab
 * apiserver (the channel protocol by hand).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { join } from 'node:path';
import WebSocket from 'ws';
import { execFile, type ExecResult } from '../../lib/exec.js';
import { controlPlanePaths } from '../../lab/machines/control-plane.js';

const kubeEnv = { ...process.env, KUBECONFIG: controlPlanePaths.adminKubeconfig };

export function kubectlWith(args: string[], o: { input?: string; timeoutMs?: number; env?: Record<string, string> } = {}): Promise<ExecResult> {
  return execFile('kubectl', args, { allowFailure: true, timeoutMs: o.timeoutMs ?? 60_000, env: { ...kubeEnv, ...(o.env ?? {}) }, ...(o.input !== undefined ? { input: o.input } : {}) });
}

export interface SpawnedKubectl {
  child: ChildProcess;
  out: () => string;
  exited: Promise<number | null>;
}

export function spawnKubectl(args: string[], env: Record<string, string> = {}): SpawnedKubectl {
  const child = spawn('kubectl', args, { env: { ...kubeEnv, ...env }, stdio: ['pipe', 'pipe', 'pipe'] });
  let out = '';
  child.stdout!.on('data', (b: Buffer) => (out += b.toString()));
  child.stderr!.on('data', (b: Buffer) => (out += b.toString()));
  const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
  return { child, out: () => out, exited };
}

export function httpGet(port: number, path: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const req = httpRequest({ host: '127.0.0.1', port, path, timeout: 10_000 }, (res) => {
      let body = '';
      res.on('data', (c: Buffer) => (body += c.toString()));
      res.on('end', () => resolve(body));
    });
    req.on('error', reject);
    req.end();
  });
}

export interface WsResult {
  protocol: string;
  channels: Map<number, string>;
}

/**
 * exec through the lab apiserver over WebSocket (channel protocol: one byte of
 * channel, then data); `input` goes to stdin, then (v5) stdin is closed.
 */
export function wsExec(podName: string, query: string, protocols: string[], input?: Buffer): Promise<WsResult> {
  const pkiDir = join(controlPlanePaths.dataDir, 'pki');
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`wss://127.0.0.1:6443/api/v1/namespaces/default/pods/${podName}/exec?${query}`, protocols, {
      ca: readFileSync(controlPlanePaths.caCert),
      cert: readFileSync(join(pkiDir, 'admin.crt')),
      key: readFileSync(join(pkiDir, 'admin.key')),
    });
    const channels = new Map<number, string>();
    ws.on('open', () => {
      if (input === undefined) return;
      ws.send(Buffer.concat([Buffer.from([0]), input]));
      ws.send(Buffer.from([255, 0]));
    });
    ws.on('message', (data: Buffer) => {
      if (data.length === 0) return;
      channels.set(data[0]!, (channels.get(data[0]!) ?? '') + data.subarray(1).toString());
    });
    ws.on('unexpected-response', (_req, res) => {
      let body = '';
      res.on('data', (c: Buffer) => (body += c.toString()));
      res.on('end', () => reject(new Error(`HTTP ${res.statusCode}: ${body}`)));
    });
    ws.on('error', reject);
    ws.on('close', () => resolve({ protocol: ws.protocol, channels }));
  });
}
