#!/usr/bin/env bash
# Vagrant provisioning of a knode worker: kernel settings, then scripts/install-node (the
# same script the install test runs) with the bootstrap token and CA the control plane
# wrote: knode-agent requests its client certificate (TLS bootstrap) as `kubeadm join` would.
# Env: NODE_NAME NODE_IP RELEASE PROXY_MODE RUNTIME POD_CIDR CP_IP
set -euo pipefail

swapoff -a; sed -i '/\sswap\s/d' /etc/fstab
printf 'overlay\nbr_netfilter\nvxlan\n' > /etc/modules-load.d/knode.conf
modprobe overlay; modprobe br_netfilter; modprobe vxlan
[ "${PROXY_MODE}" = ipvs ] && modprobe -a ip_vs ip_vs_rr
printf 'net.ipv4.ip_forward = 1\nnet.bridge.bridge-nf-call-iptables = 1\n' > /etc/sysctl.d/knode.conf
sysctl --system >/dev/null

token_file=/knode/build/vagrant/bootstrap-token
for _ in $(seq 1 60); do [ -s "$token_file" ] && break; sleep 5; done
[ -s "$token_file" ] || { echo "worker: $token_file not found; provision the control plane (cp) first" >&2; exit 1; }

/knode/scripts/install-node --release "${RELEASE}" --apiserver "https://${CP_IP}:6443" \
  --bootstrap-token "$(cat "$token_file")" --ca-cert /knode/build/vagrant/ca.crt \
  --node-name "${NODE_NAME}" --node-ip "${NODE_IP}" --runtime "${RUNTIME}" \
  --proxy-mode "${PROXY_MODE}" --cluster-cidr "${POD_CIDR}"
systemctl --no-pager status knode-agent knode-proxy | grep -E '^\S|Active:' || true
