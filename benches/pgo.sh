#!/usr/bin/env bash
# Profile-guided optimisation (LLVM PGO through rustc's `-Cprofile-generate` / `-Cprofile-use`):
# the recommended production build of cuttle, and its measurement.
#
#   benches/pgo.sh build     instrumented release build, training with benches/pgo_train.sh
#                            (a broad production-like mix, NOT the measuring workload), merge
#                            of the raw profiles, release build with the profile; prints the
#                            binary's path, target/pgo/release/cuttle
#   benches/pgo.sh measure   (the default) `build` unless the PGO binary is there for this
#                            tree, then `benches/instructions.sh` for the plain release build
#                            (target/release/cuttle) and for the PGO build, one after the other
#
# Why a script and no profile in the repository: a `.profdata` file is bound to the LLVM version
# that reads it and goes stale with the code, so the profile is made where the binary is built.
# It needs `llvm-profdata` from the toolchain's own LLVM (rustup component `llvm-tools`; it is
# added if missing); without it the script stops and the plain `cargo build --release` is the
# build to use. The flags reach every crate (dependencies too) through Cargo's rustflags, joined
# with any `build.rustflags` of a config file (or appended to RUSTFLAGS if that is set).
#
# Directories (all under target/, none committed): target/pgo-instr (the instrumented build),
# target/pgo-data (raw profiles, emptied before each training run), target/pgo/cuttle.profdata
# (the merged profile), target/pgo (the PGO build; target/pgo/trained-from is a digest of the
# code, build settings and training it was made from, which is what `measure` checks).
#
# Env:   REQS (instructions.sh, 500), SECS (seconds per training phase, see pgo_train.sh),
#        PGO_REBUILD=1 (measure: build even if the PGO binary matches the tree).
# Output: build: progress on stderr, the binary's path on stdout. measure: the two
#        instructions.sh tables on stdout. A build is two fat-LTO release builds (about 5-9
#        minutes each on a quiet 2-core machine) and ~80 s of training.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
MODE=${1:-measure}
REQS=${REQS:-500}
INSTR=$ROOT/target/pgo-instr
DATA=$ROOT/target/pgo-data
OUT=$ROOT/target/pgo
BIN=$OUT/release/cuttle
log() { printf 'pgo: %s\n' "$*" >&2; }
die() {
  log "$*"
  exit 1
}

# llvm-profdata of the LLVM that rustc is built on (another version cannot read its profiles).
profdata() {
  local sysroot host tool
  sysroot=$(rustc --print sysroot)
  host=$(rustc -vV | sed -n 's/^host: //p')
  tool=$sysroot/lib/rustlib/$host/bin/llvm-profdata
  if [ ! -x "$tool" ]; then
    log "adding the rustup component llvm-tools (for llvm-profdata)"
    command -v rustup >/dev/null && rustup component add llvm-tools >&2 ||
      die "no llvm-profdata for this toolchain (rustup component llvm-tools): use the plain build, cargo build --release"
    [ -x "$tool" ] || die "llvm-tools installed but $tool is missing: use cargo build --release"
  fi
  printf '%s\n' "$tool"
}

# release_build TARGET_DIR FLAG: `cargo build --release` of the binary with one more rustc flag
# for every crate.
release_build() {
  local dir=$1 flag=$2
  local -a cfg=()
  if [ -n "${RUSTFLAGS:-}" ]; then
    # RUSTFLAGS replaces every config-file rustflags, so the flag has to go into it.
    local RUSTFLAGS="$RUSTFLAGS $flag"
    export RUSTFLAGS
  else
    cfg=(--config "build.rustflags=[\"$flag\"]")
  fi
  (cd "$ROOT" && CARGO_TARGET_DIR=$dir cargo build "${cfg[@]}" --release --quiet --bin cuttle)
}

# What a PGO binary is made from: the committed and the uncommitted state of the code, the build
# settings and the training (commits elsewhere, e.g. to the README, do not count).
tree_id() {
  local paths=(src Cargo.toml Cargo.lock .cargo build.rs benches/pgo_train.sh benches/lib.sh)
  (cd "$ROOT" && { git ls-files -s -- "${paths[@]}" && git diff HEAD -- "${paths[@]}"; } |
    sha256sum | cut -c1-16)
}

build() {
  local tool t0 n
  tool=$(profdata)
  t0=$(date +%s)
  log "1/4 instrumented release build ($INSTR)"
  release_build "$INSTR" "-Cprofile-generate=$DATA"
  log "2/4 training (benches/pgo_train.sh), raw profiles in $DATA"
  rm -rf "$DATA"
  mkdir -p "$DATA"
  # One file per process (%p), written when cuttle exits.
  LLVM_PROFILE_FILE="$DATA/cuttle-%p.profraw" CUTTLE=$INSTR/release/cuttle \
    "$ROOT/benches/pgo_train.sh"
  n=$(find "$DATA" -name '*.profraw' -size +0 | wc -l)
  [ "$n" -gt 0 ] || die "the training wrote no profile to $DATA (did cuttle exit cleanly?)"
  log "3/4 merging $n raw profile(s)"
  mkdir -p "$OUT"
  "$tool" merge -o "$OUT/cuttle.profdata" "$DATA"/*.profraw
  log "4/4 release build with the profile ($OUT)"
  rm -f "$OUT/trained-from"
  # Cargo does not see a new profile of unchanged crates (the flag is the same): build afresh.
  rm -rf "$OUT/release"
  release_build "$OUT" "-Cprofile-use=$OUT/cuttle.profdata"
  tree_id >"$OUT/trained-from"
  log "done in $(($(date +%s) - t0)) s"
  printf '%s\n' "$BIN"
}

measure() {
  if [ "${PGO_REBUILD:-0}" = 1 ] || [ ! -x "$BIN" ] ||
    [ "$(cat "$OUT/trained-from" 2>/dev/null)" != "$(tree_id)" ]; then
    build >/dev/null
  fi
  log "plain release build (cargo build --release)"
  (cd "$ROOT" && cargo build --release --quiet --bin cuttle)
  printf '### plain release build\n\n'
  CUTTLE=$ROOT/target/release/cuttle REQS=$REQS "$ROOT/benches/instructions.sh"
  printf '\n### PGO build (%s)\n\n' "$BIN"
  CUTTLE=$BIN REQS=$REQS "$ROOT/benches/instructions.sh"
}

case $MODE in
  build) build ;;
  measure) measure ;;
  *) die "usage: benches/pgo.sh [build|measure]" ;;
esac
