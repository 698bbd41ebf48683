#!/usr/bin/env bash
# Vagrant provisioning of the control plane: containerd, kubeadm/kubelet/kubectl from
# pkgs.k8s.io, `kubeadm init` without the kube-proxy add-on (the workers run knode-proxy),
# and one node kubeconfig per worker in /knode/build/vagrant/ (system:node:<name>, group
# system:nodes, as the kubelet's TLS bootstrap would end with).
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
for i in $(seq 1 "${WORKERS}"); do
  kubeadm kubeconfig user --client-name "system:node:worker-${i}" --org system:nodes > "$out/worker-${i}.kubeconfig"
done
echo "control plane ready: kubectl get nodes"
