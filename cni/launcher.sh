#!/bin/sh
# knode CNI plugin launcher, made from cni/launcher.sh by @GENERATOR@ (do not edit here).
#
# knode's CNI plugins are TypeScript programs (@DIST@/<plugin>.mjs, run by Node). This is a
# wrapper around them, as iptables-restore wraps its real binary: every plugin name in the CNI bin
# dir is a link to this file, and the plugin is the link's name ($0). When knode-cni-daemon
# runs, the request (the CNI_* variables and stdin) goes to it over its unix socket with socat,
# so no Node process starts per call; otherwise the plugin program runs itself, exactly as when
# no daemon exists. Wire format: KNODE-CNI/2, documented in cni/daemon/protocol.ts.
#
# Forks: cat (stdin is read once, kept for a fallback) and socat; none without a daemon. The
# request is a here-document (no writer process below 4 KiB in dash). Values are length-prefixed,
# so CNI_ARGS or paths with spaces, quotes or newlines pass unchanged (LC_ALL=C: ${#v} = bytes).
# KNODE_CNI_SOCKET, KNODE_CNI_TIMEOUT (seconds) and KNODE_CNI_DAEMON=off are for tests.
LC_ALL=C
node='@NODE@'
dist='@DIST@'
socat='@SOCAT@'
sock=${KNODE_CNI_SOCKET:-'@SOCKET@'}
wait=${KNODE_CNI_TIMEOUT:-90}
nl='
'

# Errors in the spec's JSON on stdout, exit 1 (messages are fixed text: nothing to escape).
fail() {
  printf '{"cniVersion":"1.1.0","code":%s,"msg":"%s"}\n' "$1" "$2"
  exit 1
}

case ${0##*/} in
  knode-bridge|knode-host-local|knode-loopback|knode-portmap|knode-flannel) plugin=${0##*/} ;;
  loopback) plugin=knode-loopback ;;
  *) fail 7 'knode CNI launcher: called by a name that is not a knode plugin' ;;
esac
case $wait in ''|*[!0-9]*|0) wait=90 ;; esac

# The plugin program itself: what runs when no daemon does (stdin untouched, no cat).
plugin_itself() {
  KNODE_CNI_DAEMON=off
  export KNODE_CNI_DAEMON
  exec "$node" "$dist/$plugin.mjs"
}
# socat parses its address: only plain path characters are passed to it.
case $sock in *[!A-Za-z0-9/._-]*) fail 4 'knode CNI launcher: unusable characters in KNODE_CNI_SOCKET' ;; esac
[ "${KNODE_CNI_DAEMON-}" != off ] && [ -S "$sock" ] || plugin_itself

# stdin is read once and kept: the daemon may still say "do it yourself". VERSION may be run by
# hand, from a terminal: no config to read then.
if [ "${CNI_COMMAND-}" = VERSION ] && [ -t 0 ]; then config=; else config=$(cat); fi
fallback() {
  plugin_itself <<EOF
$config
EOF
}

answer=$(exec "$socat" -t"$wait" -T"$wait" - "UNIX-CONNECT:$sock" 2>/dev/null <<EOF
KNODE-CNI/2 $plugin
CNI_COMMAND ${#CNI_COMMAND}
${CNI_COMMAND-}
CNI_CONTAINERID ${#CNI_CONTAINERID}
${CNI_CONTAINERID-}
CNI_NETNS ${#CNI_NETNS}
${CNI_NETNS-}
CNI_IFNAME ${#CNI_IFNAME}
${CNI_IFNAME-}
CNI_ARGS ${#CNI_ARGS}
${CNI_ARGS-}
CNI_PATH ${#CNI_PATH}
${CNI_PATH-}
KNODE_LOG_LEVEL ${#KNODE_LOG_LEVEL}
${KNODE_LOG_LEVEL-}
stdin ${#config}
$config
EOF
)
rc=$?

# $(...) dropped the final newline: a complete answer ends with the trailer line.
case $answer in
  "KNODE-CNI/2 ok$nl"*"${nl}KNODE-CNI/2 end") ;;
  '')
    # socat failed without a byte back: no connection (stale socket, refused): nothing was done.
    [ "$rc" -ne 0 ] && fallback
    fail 11 "knode-cni-daemon accepted the connection but gave no answer (timeout $wait s); try again later" ;;
  "KNODE-CNI/2 ok"*)
    fail 11 'knode-cni-daemon took the request but died or hung before answering; try again later' ;;
  *)
    # "KNODE-CNI/2 fallback netns|protocol", or not this protocol at all: nothing was done.
    fallback ;;
esac

body=${answer#*"$nl"}
body=${body%"${nl}KNODE-CNI/2 end"}
code=${body%%"$nl"*}
body=${body#*"$nl"}
out=${body%%"$nl"*}
case $body in *"$nl"*) err=${body#*"$nl"} ;; *) err= ;; esac
case $code in ''|*[!0-9]*) fail 999 'knode CNI launcher: malformed answer from knode-cni-daemon' ;; esac
[ -z "$err" ] || printf '%s\n' "$err" >&2
[ -z "$out" ] || printf '%s\n' "$out"
exit "$code"
