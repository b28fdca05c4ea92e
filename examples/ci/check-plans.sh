#!/bin/sh
# CI: validate every plan of a matrix against its inventories (warnings fail unless the line
# allows them), render each compiled plan as text and JSON for review, and fail on any problem.
# usage: check-plans.sh [MATRIX] [OUT_DIR]   (defaults: examples/ci/plans.matrix, plans-rendered)
set -eu
matrix=${1:-examples/ci/plans.matrix}
out=${2:-plans-rendered}
runbook=${RUNBOOK:-runbook}
mkdir -p "$out"
failed=0
checked=0
while IFS= read -r line; do
  case $line in '#'* | '') continue ;; esac
  deny=--deny-warnings
  case $line in *'# allow-warnings'*) deny= ;; esac
  line=${line%%#*}
  # shellcheck disable=SC2086 # the matrix is words: plan, inventory, NAME=VALUE...
  set -- $line
  plan=$1 inventory=$2
  shift 2
  sets=
  for kv in "$@"; do sets="$sets --set $kv"; done
  name=$(basename "$plan" .yaml)-$(basename "$inventory" .yaml)
  checked=$((checked + 1))
  # shellcheck disable=SC2086
  if ! "$runbook" validate "$plan" -i "$inventory" $sets $deny; then
    failed=$((failed + 1))
    continue
  fi
  # shellcheck disable=SC2086
  "$runbook" plan "$plan" -i "$inventory" $sets --out "$out/$name.txt"
  # shellcheck disable=SC2086
  "$runbook" plan "$plan" -i "$inventory" $sets -o json --out "$out/$name.json"
done < "$matrix"
echo "checked $checked plan/inventory pairs, $failed failed; rendered plans in $out/"
[ "$failed" -eq 0 ] && [ "$checked" -gt 0 ]
