#!/usr/bin/env bash
# The peer of `runbook apply etcd-backup` in `cargo bench --bench backup`: the backup script
# operators keep beside their clusters — health, `etcdctl snapshot save` on a member, the file
# streamed here, `etcdutl snapshot status`, sha256, a copy to another directory checked there,
# keep the newest N in both — with none of runbook's preflight, metrics gate, journal or locks.
# usage: backup.sh SSH_CONFIG ADDRESS ETCDCTL ETCDUTL DIR COPY_DIR KEEP CLUSTER
set -euo pipefail
cfg=$1 addr=$2 etcdctl=$3 etcdutl=$4 dir=$5 copy=$6 keep=$7 cluster=$8
tls="--cacert=/etc/kubernetes/pki/etcd/ca.crt --cert=/etc/kubernetes/pki/etcd/server.crt --key=/etc/kubernetes/pki/etcd/server.key"
f="etcd-$cluster-$(date -u +%Y%m%dT%H%M%S%N).db"
mkdir -p "$dir" "$copy"
ssh -F "$cfg" "root@$addr" "$etcdctl --endpoints=https://$addr:2379 $tls endpoint health --cluster >/dev/null"
ssh -F "$cfg" "root@$addr" "$etcdctl --endpoints=https://$addr:2379 $tls snapshot save /var/lib/runbook/peer.db >/dev/null && cat /var/lib/runbook/peer.db && rm -f /var/lib/runbook/peer.db" > "$dir/$f.part"
mv "$dir/$f.part" "$dir/$f"
"$etcdutl" snapshot status "$dir/$f" >/dev/null
(cd "$dir" && sha256sum "$f" > "$f.sha256")
cp "$dir/$f" "$dir/$f.sha256" "$copy/"
(cd "$copy" && sha256sum --quiet -c "$f.sha256")
for d in "$dir" "$copy"; do
  (cd "$d" && ls -1t -- etcd-"$cluster"-*.db | tail -n +$((keep + 1)) | while read -r old; do rm -f -- "$old" "$old.sha256"; done)
done
