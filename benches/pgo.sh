#!/usr/bin/env bash
# Profile-guided optimisation of the cuttle binary, measured.
#
# Question: does a release build laid out by a profile of real hits and misses (rustc's
# `-Cprofile-generate` / `-Cprofile-use`, LLVM PGO) run fewer instructions and, above all, miss
# the L1 instruction cache less often per request than the plain fat-LTO release build?
#
# Method: build an instrumented release binary into its own target directory; run
# `benches/instructions.sh` with it as the training workload (reverse mode in front of nginx:
# 1 KiB and 100 KiB memory hits, 1 KiB no-store misses, with warm-ups; the counts it prints
# for the instrumented binary mean nothing); merge the raw profile with the toolchain's
# `llvm-profdata` (rustup component `llvm-tools`); build again with the profile; then measure
# the plain release build and the PGO build with `benches/instructions.sh`, one after the other.
#
# Usage: benches/pgo.sh           (REQS=500 for the measurement, TRAIN_REQS=300)
# Env:   REQS, TRAIN_REQS, WORK (directory for the two builds and the profile; default a
#        mktemp -d under /tmp, kept so the PGO binary can be reused: $WORK/target/release/cuttle).
# Output: the two instructions.sh tables on stdout (progress on stderr). Takes two full release
#        builds (about 5-8 minutes each on two cores) plus three instructions.sh runs.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
REQS=${REQS:-500}
TRAIN_REQS=${TRAIN_REQS:-300}
WORK=${WORK:-$(mktemp -d /tmp/cuttle-pgo.XXXXXX)}
log() { printf '%s\n' "$*" >&2; }

sysroot=$(rustc --print sysroot)
host=$(rustc -vV | sed -n 's/^host: //p')
PROFDATA=$sysroot/lib/rustlib/$host/bin/llvm-profdata
if [ ! -x "$PROFDATA" ]; then
  log "installing the llvm-tools component for llvm-profdata"
  rustup component add llvm-tools >&2
fi

log "1/5 instrumented release build in $WORK/target"
rm -rf "$WORK/data"
(cd "$ROOT" && RUSTFLAGS="-Cprofile-generate=$WORK/data" CARGO_TARGET_DIR="$WORK/target" \
  cargo build --release --quiet --bin cuttle)
log "2/5 training run (instructions.sh, REQS=$TRAIN_REQS)"
CUTTLE=$WORK/target/release/cuttle REQS=$TRAIN_REQS "$ROOT/benches/instructions.sh" >/dev/null
log "3/5 merging the profile"
"$PROFDATA" merge -o "$WORK/merged.profdata" "$WORK/data"
log "4/5 release build with the profile"
(cd "$ROOT" && RUSTFLAGS="-Cprofile-use=$WORK/merged.profdata" CARGO_TARGET_DIR="$WORK/target" \
  cargo build --release --quiet --bin cuttle)
log "5/5 measuring: plain release build, then the PGO build"
(cd "$ROOT" && cargo build --release --quiet --bin cuttle)
printf '### plain release build\n\n'
CUTTLE=$ROOT/target/release/cuttle REQS=$REQS "$ROOT/benches/instructions.sh"
printf '\n### PGO build (%s)\n\n' "$WORK/target/release/cuttle"
CUTTLE=$WORK/target/release/cuttle REQS=$REQS "$ROOT/benches/instructions.sh"
