#!/bin/bash
# Ferry's backup, no-change backup and restore with two builds of the bench program (test/bench)
# on one generated dataset (SIZE_MB, default 2048, in 100 KiB files, 200 per directory), in three
# interleaved rounds: how a change costs. Build the two with
#   CGO_ENABLED=0 go build -o DIR/bench-old ./test/bench   (in a checkout of the old revision)
#   CGO_ENABLED=0 go build -o DIR/bench-new ./test/bench
# and run BENCH_DIR=DIR hack/bench-builds.sh (it needs no network, so it runs on a bigger machine).
# Prints one line per operation: round, version, op, seconds, peak RSS (KiB, with /usr/bin/time).
set -euo pipefail
: "${BENCH_DIR:?set BENCH_DIR to the directory holding bench-old and bench-new}"
W=${TMPDIR:-/tmp}/ferry-devbench
rm -rf "$W"; mkdir -p "$W/src"
cd "$W/src"
head -c $((${SIZE_MB:-2048}*1024*1024)) /dev/urandom | split -b 102400 -a 5 - f_

ls | split -l 200 - "$W"/list_
n=0
for l in "$W"/list_*; do mkdir -p "d$n"; xargs -a "$l" mv -t "d$n"; n=$((n+1)); done
rm -f "$W"/list_*
echo "dataset: $(find "$W/src" -type f | wc -l) files, $(du -sm "$W/src" | cut -f1) MiB in $n dirs; nproc $(nproc)"
run() { # round version op args...
  local r=$1 v=$2 op=$3; shift 3
  local t0 t1 out
  t0=$(date +%s.%N)
  if [ -x /usr/bin/time ]; then
    out=$( { /usr/bin/time -f "%M" "$@" > "$W/$v.out"; } 2>&1 | tail -1 )
  else
    "$@" > "$W/$v.out"; out=-
  fi
  t1=$(date +%s.%N)
  echo "round=$r version=$v op=$op seconds=$(awk "BEGIN{printf \"%.2f\", $t1 - $t0}") peakKB=$out"
}
for r in 1 2 3; do
  if [ $((r % 2)) = 1 ]; then order="old new"; else order="new old"; fi
  for v in $order; do
    B=$BENCH_DIR/bench-$v
    rm -rf "$W/$v"; mkdir -p "$W/$v"
    "$B" -ferry-op=init -repo="$W/$v/repo" -workdir="$W/$v/state" >/dev/null
    run $r $v backup "$B" -ferry-op=backup -repo="$W/$v/repo" -workdir="$W/$v/state" -source="$W/src"
    snap=$(sed -n 's/.*"snapshotID":"\([0-9a-f]*\)".*/\1/p' "$W/$v.out")
    run $r $v nochange "$B" -ferry-op=backup -repo="$W/$v/repo" -workdir="$W/$v/state" -source="$W/src"
    sync
    run $r $v restore "$B" -ferry-op=restore -repo="$W/$v/repo" -workdir="$W/$v/state" -target="$W/$v/restore" -snapshot="$snap"
    rm -rf "$W/$v"
  done
done
