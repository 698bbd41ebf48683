#!/usr/bin/env bash
# Vagrant provisioning of the control plane: containerd, kubeadm/kubelet/kubectl from
# pkgs.k8s.io, `kubeadm init` without the kube-proxy add-on (the workers run knode-proxy),
# and what the workers join with in /knode/build/vagrant/: the cluster CA and a bootstrap
# token (`kubeadm token create`), with which knode-agent does the kubelet's TLS bootstrap
# (kubeadm's RBAC lets the token ask for node client certificates and auto-approves them).
# Env: CP_IP POD_CIDR SERVICE_CIDR K8S WORKERS
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive

swapoff -a; sed -i '/\sswap\s/d' /etc/fstab
printf 'overlay\nbr_netfilter\n' > /etc/modules-load.d/k8s.conf
modprobe overlay; modprobe br_netfilter
printf 'net.ipv4.ip_forward = 1\nnet.bridge.bridge-nf-call-iptables = 1\n' > /etc/sysctl.d/k8s.conf
sysctl --system >/dev/null

apt-get update -qq
apt-get install -y -qq containerd runc curl gpg apt-transport-https ca-certificates >/dev/null
mkdir -p /etc/containerd
containerd config default | sed 's/SystemdCgroup = false/SystemdCgroup = true/' > /etc/containerd/config.toml
systemctl restart containerd

mkdir -p /etc/apt/keyrings
curl -fsSL "https://pkgs.k8s.io/core:/stable:/${K8S}/deb/Release.key" | gpg --dearmor --yes -o /etc/apt/keyrings/kubernetes.gpg
echo "deb [signed-by=/etc/apt/keyrings/kubernetes.gpg] https://pkgs.k8s.io/core:/stable:/${K8S}/deb/ /" > /etc/apt/sources.list.d/kubernetes.list
apt-get update -qq
apt-get install -y -qq kubelet kubeadm kubectl >/dev/null
apt-mark hold kubelet kubeadm kubectl
echo "KUBELET_EXTRA_ARGS=--node-ip=${CP_IP}" > /etc/default/kubelet

if [ ! -f /etc/kubernetes/admin.conf ]; then
  kubeadm init --apiserver-advertise-address="${CP_IP}" --pod-network-cidr="${POD_CIDR}" \
    --service-cidr="${SERVICE_CIDR}" --node-name cp --skip-phases=addon/kube-proxy
fi
mkdir -p /root/.kube /home/vagrant/.kube
cp /etc/kubernetes/admin.conf /root/.kube/config
cp /etc/kubernetes/admin.conf /home/vagrant/.kube/config
chown -R vagrant:vagrant /home/vagrant/.kube

out=/knode/build/vagrant
mkdir -p "$out"
cp /etc/kubernetes/admin.conf "$out/admin.kubeconfig"
cp /etc/kubernetes/pki/ca.crt "$out/ca.crt"
# knode-proxy uses the node's credentials: give the nodes kube-proxy's read rights.
kubectl create clusterrolebinding knode-proxy-nodes --clusterrole=system:node-proxier --group=system:nodes \
  --dry-run=client -o yaml | kubectl apply -f - >/dev/null
# A fresh token per provisioning run (24 h, kubeadm's default); workers wait for it.
kubeadm token create --ttl 24h > "$out/bootstrap-token.new"
mv "$out/bootstrap-token.new" "$out/bootstrap-token"
rm -f "$out"/worker-*.kubeconfig
echo "control plane ready: kubectl get nodes"
