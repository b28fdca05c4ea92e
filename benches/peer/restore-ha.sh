#!/usr/bin/env bash
# The peer of `runbook apply plans/etcd-restore-ha.yaml` in `cargo bench --bench lab`: the same
# restore as an operator writes it by hand — one ssh master per host, every node in parallel
# at each phase, polling waits — with none of runbook's checks, journal, gates or locks.
# usage: restore-ha.sh SSH_CONFIG SNAPSHOT TOKEN ETCDUTL ETCDCTL NAME=ADDRESS...
set -euo pipefail
cfg=$1 snap=$2 token=$3 etcdutl=$4 etcdctl=$5
shift 5
ctl=$(mktemp -d)
trap 'for m in "$ctl"/*; do ssh -o ControlPath="$m" -O exit x 2>/dev/null || true; done; rm -rf "$ctl"' EXIT
on() { local a=$1; shift; ssh -F "$cfg" -o ControlPath="$ctl/$a" "root@$a" "$@"; }
cluster=""
for nv in "$@"; do cluster+="${cluster:+,}${nv%%=*}=https://${nv#*=}:2380"; done
tls="--cacert=/etc/kubernetes/pki/etcd/ca.crt --cert=/etc/kubernetes/pki/etcd/server.crt --key=/etc/kubernetes/pki/etcd/server.key"
for nv in "$@"; do
  ssh -F "$cfg" -o ControlMaster=yes -o ControlPath="$ctl/${nv#*=}" -o ControlPersist=60 -fN "root@${nv#*=}"
done
# copy, and park the control plane (kube-apiserver, kube-controller-manager, kube-scheduler),
# everywhere at once
cp_pods="kube-apiserver.yaml kube-controller-manager.yaml kube-scheduler.yaml"
for nv in "$@"; do a=${nv#*=}
  ( on "$a" 'mkdir -p /var/lib/runbook/snapshots' && on "$a" 'cat > /var/lib/runbook/snapshots/s.db' < "$snap"
    on "$a" "mkdir -p /etc/kubernetes/runbook-parked && cd /etc/kubernetes/manifests && mv $cp_pods /etc/kubernetes/runbook-parked/" ) &
done; wait
# once every kube-apiserver is gone (one still shutting down writes to etcd, and hangs until
# killed if etcd goes first), park etcd everywhere at once and wait until it is gone
for nv in "$@"; do a=${nv#*=}
  on "$a" 'while pgrep -x kube-apiserver >/dev/null; do sleep 0.1; done' &
done; wait
for nv in "$@"; do a=${nv#*=}
  on "$a" 'mv /etc/kubernetes/manifests/etcd.yaml /etc/kubernetes/runbook-parked/ && while pgrep -x etcd >/dev/null; do sleep 0.1; done' &
done; wait
# restore beside the data dir, swap, start etcd
for nv in "$@"; do n=${nv%%=*} a=${nv#*=}
  on "$a" "rm -rf /var/lib/etcd/.restore && $etcdutl snapshot restore /var/lib/runbook/snapshots/s.db --data-dir=/var/lib/etcd/.restore --name=$n --initial-cluster=$cluster --initial-cluster-token=$token --initial-advertise-peer-urls=https://$a:2380 >/dev/null 2>&1 && mkdir -p /var/lib/etcd/.old/\$\$ && mv /var/lib/etcd/member /var/lib/etcd/.old/\$\$/ 2>/dev/null; mv /var/lib/etcd/.restore/member /var/lib/etcd/member && mv /etc/kubernetes/runbook-parked/etcd.yaml /etc/kubernetes/manifests/" &
done; wait
# wait for every member, then bring kube-apiserver back and wait for it
for nv in "$@"; do a=${nv#*=}
  on "$a" "until $etcdctl --endpoints=https://$a:2379 $tls endpoint health >/dev/null 2>&1; do sleep 0.1; done" &
done; wait
for nv in "$@"; do a=${nv#*=}
  on "$a" 'mv /etc/kubernetes/runbook-parked/kube-apiserver.yaml /etc/kubernetes/manifests/ && until curl -fsS --max-time 2 --cacert /etc/kubernetes/pki/ca.crt https://127.0.0.1:6443/readyz >/dev/null 2>&1; do sleep 0.1; done' &
done; wait
# then the controllers
for nv in "$@"; do a=${nv#*=}
  on "$a" 'mv /etc/kubernetes/runbook-parked/kube-controller-manager.yaml /etc/kubernetes/runbook-parked/kube-scheduler.yaml /etc/kubernetes/manifests/' &
done; wait
