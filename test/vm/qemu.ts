/**
 * A qemu TCG guest driven over its serial console: boot a kernel + initramfs, wait for the
 * init's "@@READY", then run shell commands one at a time and read their output and exit code.
 *
 * Design notes
 * - Framing: each command is sent as `echo @@BEGIN n; <cmd>; printf '\n@@END n %s\n' "$?"`; the output is
 *   what lies between the two marker lines (the guest disables echo, and markers are matched as
 *   whole lines, so an echoed command line could not be mistaken for them anyway).
 * - Networking (optional): qemu user networking with `restrict=on`, so the guest reaches nothing
 *   but explicit `guestfwd` forwards (e.g. 10.0.2.100:6443 → the host's 127.0.0.1 apiserver).
 *   The guest gets no default route.
 * - `stop()` kills qemu (SIGKILL after a grace period); always call it from a teardown.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { KnodeError } from '../../lib/errors.js';

export interface VmOptions {
  kernel: string;
  initrd: string;
  memoryMb?: number;
  /** guestfwd rules: guest TCP address:port → a command whose stdio is the connection. */
  forwards?: { guest: string; cmd: string }[];
  /** Extra kernel command line. */
  append?: string;
  /** Every byte of console output (for a log on failure). */
  onOutput?: (chunk: string) => void;
}

export class SerialVm {
  private out = '';
  private seq = 0;
  private exited: Promise<number | null>;
  private exitCode: number | null | undefined;

  private constructor(private readonly proc: ChildProcess) {
    this.exited = new Promise((resolve) => proc.on('exit', (code) => resolve((this.exitCode = code))));
  }

  static start(opts: VmOptions): SerialVm {
    const args = [
      '-accel', 'tcg',
      '-cpu', 'max',
      '-m', String(opts.memoryMb ?? 1024),
      '-nographic',
      '-no-reboot',
      '-monitor', 'none',
      '-serial', 'stdio',
      '-kernel', opts.kernel,
      '-initrd', opts.initrd,
      '-append', `console=ttyS0 panic=-1 loglevel=1 ${opts.append ?? ''}`.trim(),
    ];
    if (opts.forwards && opts.forwards.length > 0) {
      const fwd = opts.forwards.map((f) => `guestfwd=tcp:${f.guest}-cmd:${f.cmd}`).join(',');
      args.push('-netdev', `user,id=n0,restrict=on,net=10.0.2.0/24,${fwd}`, '-device', 'e1000,netdev=n0');
    } else {
      args.push('-nic', 'none');
    }
    const proc = spawn('qemu-system-x86_64', args, { stdio: ['pipe', 'pipe', 'pipe'] });
    const vm = new SerialVm(proc);
    const onData = (b: Buffer): void => {
      const s = b.toString('utf8');
      vm.out += s;
      opts.onOutput?.(s);
    };
    proc.stdout!.on('data', onData);
    proc.stderr!.on('data', onData);
    return vm;
  }

  /** Wait until a console line matches `re`; the match. */
  async waitFor(re: RegExp, timeoutMs: number, from = 0): Promise<RegExpExecArray> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const m = re.exec(this.out.slice(from));
      if (m) return m;
      if (this.exitCode !== undefined) throw new KnodeError('VM_EXITED', `qemu exited (${String(this.exitCode)}) before ${String(re)}`, { details: { tail: this.out.slice(-2000) } });
      if (Date.now() > deadline) throw new KnodeError('VM_TIMEOUT', `no ${String(re)} on the console within ${timeoutMs} ms`, { details: { tail: this.out.slice(-2000) } });
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  /** Run one shell command in the guest; its output (CR stripped) and exit code. */
  async run(cmd: string, timeoutMs = 30_000): Promise<{ code: number; out: string }> {
    if (cmd.includes('\n')) throw new KnodeError('VM_COMMAND', 'one line per command');
    const n = ++this.seq;
    const from = this.out.length;
    // the END marker starts on a fresh line even when the output has no final newline
    this.proc.stdin!.write(`echo @@BEGIN ${n}; ${cmd}; printf '\\n@@END ${n} %s\\n' "$?"\n`);
    const m = await this.waitFor(new RegExp(`^@@BEGIN ${n}\\r?\\n([\\s\\S]*?)\\r?\\n@@END ${n} (\\d+)\\r?$`, 'm'), timeoutMs, from);
    return { code: Number(m[2]), out: (m[1] ?? '').replace(/\r/g, '') };
  }

  /** Like run, but a non-zero exit is an error. */
  async sh(cmd: string, timeoutMs = 30_000): Promise<string> {
    const r = await this.run(cmd, timeoutMs);
    if (r.code !== 0) throw new KnodeError('VM_COMMAND_FAILED', `guest command failed (exit ${r.code}): ${cmd}\n${r.out}`);
    return r.out;
  }

  get console(): string {
    return this.out;
  }

  async stop(): Promise<void> {
    if (this.exitCode !== undefined) return;
    this.proc.kill('SIGTERM');
    const timer = setTimeout(() => this.proc.kill('SIGKILL'), 3000);
    await this.exited;
    clearTimeout(timer);
  }
}
