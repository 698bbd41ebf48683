/**
 * The two images the lab and the tests run: `pause` (the pod sandbox) and
 * `app` (busybox serving a page that names the pod).
 *
 * Design notes: these are pure functions from their inputs (the compiled pause
 * binary; the busybox binary and its applet list) to an `ImageSpec`; build.ts
 * gathers the inputs from the machine and writes the archives.
 */
import { imageRefs } from '../paths.js';
import type { ImageSpec } from '../../lib/oci/image.js';
import type { TarEntry } from '../../lib/oci/tar.js';
import { cleanPath } from '../../lib/oci/tar.js';

const PATH_ENV = 'PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

export interface PauseInputs {
  pauseBinary: Buffer;
  architecture: string;
}

export function pauseImageSpec(inputs: PauseInputs): ImageSpec {
  return {
    ref: imageRefs.pause,
    architecture: inputs.architecture,
    os: 'linux',
    layers: [{ entries: [{ type: 'file', path: 'pause', mode: 0o755, data: inputs.pauseBinary }], createdBy: 'knode: images/pause/pause.c, gcc -static -O2' }],
    // As upstream's pause image: runs as 65535, which needs no /etc/passwd entry.
    config: { entrypoint: ['/pause'], user: '65535:65535', env: [PATH_ENV], workingDir: '/' },
  };
}

/** The app's start script: writes the page (naming the pod by its hostname) into a fresh dir, then serves it. */
export const appStartScript = `#!/bin/sh
# knode app: serve a page that names this pod (its hostname) over HTTP.
#   /            HTML page naming the pod
#   /hostname    the hostname alone
#   /healthz     "ok"
#   /cgi-bin/whoami  hostname, client address and port (to check source NAT)
# PORT (default 8080) and WWW_ROOT (default /tmp/www) can be set in the environment.
set -e
port="\${PORT:-8080}"
root="\${WWW_ROOT:-/tmp/www}"
name="$(hostname)"
mkdir -p "$root/cgi-bin"
cp /usr/share/knode-app/cgi-bin/whoami "$root/cgi-bin/whoami"
printf '<!doctype html>\\n<html><head><title>knode app: %s</title></head><body><h1>Hello from pod %s</h1></body></html>\\n' "$name" "$name" >"$root/index.html"
printf '%s\\n' "$name" >"$root/hostname"
printf 'ok\\n' >"$root/healthz"
echo "knode app: pod $name serving $root on port $port" >&2
exec httpd -f -p "$port" -h "$root"
`;

export const appWhoamiCgi = `#!/bin/sh
# Client address as the server saw it: httpd reports IPv4 clients as [::ffff:a.b.c.d].
addr="\${REMOTE_ADDR#\\[}"
addr="\${addr%\\]}"
addr="\${addr#::ffff:}"
printf 'Content-Type: text/plain\\r\\n\\r\\n'
printf 'hostname=%s\\n' "$(hostname)"
printf 'client_addr=%s\\n' "$addr"
printf 'client_port=%s\\n' "$REMOTE_PORT"
`;

export const appPasswd = 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n';
export const appGroup = 'root:x:0:\nnobody:x:65534:\n';

export interface AppInputs {
  busyboxBinary: Buffer;
  /** Applet paths as `busybox --list-full` prints them ('bin/sh', 'usr/sbin/httpd', ...). */
  applets: readonly string[];
  architecture: string;
}

export function appImageSpec(inputs: AppInputs): ImageSpec {
  const text = (path: string, mode: number, content: string): TarEntry => ({ type: 'file', path, mode, data: Buffer.from(content, 'utf8') });
  const entries: TarEntry[] = [
    { type: 'file', path: 'bin/busybox', mode: 0o755, data: inputs.busyboxBinary },
    { type: 'dir', path: 'tmp', mode: 0o1777 },
    { type: 'dir', path: 'root', mode: 0o700 },
    { type: 'dir', path: 'proc', mode: 0o555 },
    { type: 'dir', path: 'sys', mode: 0o555 },
    { type: 'dir', path: 'dev', mode: 0o755 },
    { type: 'dir', path: 'var', mode: 0o755 },
    text('etc/passwd', 0o644, appPasswd),
    text('etc/group', 0o644, appGroup),
    text('bin/knode-app', 0o755, appStartScript),
    text('usr/share/knode-app/cgi-bin/whoami', 0o755, appWhoamiCgi),
  ];
  const taken = new Set(entries.map((e) => cleanPath(e.path)));
  for (const applet of [...new Set(inputs.applets.map(cleanPath))].sort()) {
    if (taken.has(applet)) continue;
    entries.push({ type: 'symlink', path: applet, target: '/bin/busybox' });
  }
  return {
    ref: imageRefs.app,
    architecture: inputs.architecture,
    os: 'linux',
    layers: [{ entries, createdBy: "knode: busybox-static rootfs and /bin/knode-app" }],
    config: { cmd: ['/bin/knode-app'], env: [PATH_ENV], exposedPorts: ['8080/tcp'], workingDir: '/' },
  };
}
