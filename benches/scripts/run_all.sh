#!/bin/bash
# Runs every weft-vs-tokio bench area once with short criterion times and
# records the machine and the load average around each run, for
# benches/scripts/report.py (which reads them from the criterion directory):
#
#   benches/scripts/run_all.sh [BENCH...]      # default: every area
#   python3 benches/scripts/report.py
#
# Logs go to $CARGO_TARGET_DIR/bench-logs/<bench>.log. The memory bench is
# not a criterion bench; its table is kept as criterion/memory.txt.
set -u
cd "$(dirname "$0")/../.."
TARGET=${CARGO_TARGET_DIR:-$PWD/target}
CRIT=$TARGET/criterion
LOGS=$TARGET/bench-logs
mkdir -p "$CRIT" "$LOGS"
LOAD=$CRIT/weft-load.tsv
echo "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB RAM, Linux $(uname -r)" > "$CRIT/weft-machine.txt"
BENCHES=${*:-scheduler cancel memory echo lines breaker pool sync_channels sync_locks limit pipeline}
: > "$LOAD.new"
[ -f "$LOAD" ] && grep -v -w -F -f <(printf '%s\n' $BENCHES) "$LOAD" >> "$LOAD.new"
mv "$LOAD.new" "$LOAD"
for b in $BENCHES; do
  cargo bench -p weft-benches --bench "$b" --no-run > "$LOGS/$b.build.log" 2>&1 || { echo "$b: build failed, see $LOGS/$b.build.log"; continue; }
  before=$(cut -d' ' -f1-3 /proc/loadavg)
  start=$(date -u +%H:%M:%S)
  if [ "$b" = memory ]; then
    cargo bench -p weft-benches --bench "$b" > "$LOGS/$b.log" 2>&1
    rc=$?
    cp "$LOGS/$b.log" "$CRIT/memory.txt"
  else
    cargo bench -p weft-benches --bench "$b" -- --warm-up-time 1 --measurement-time 3 > "$LOGS/$b.log" 2>&1
    rc=$?
  fi
  after=$(cut -d' ' -f1-3 /proc/loadavg)
  printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$b" "$start" "$(date -u +%H:%M:%S)" "$before" "$after" "$rc" >> "$LOAD"
  echo "$b: exit $rc, load $before -> $after"
done
