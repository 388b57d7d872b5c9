#!/usr/bin/env bash
# Runs each fuzz target for a fixed time and prints a summary: executions, final corpus
# and crashes per target. See tests/fuzz/README.md.
#
#   bash tests/fuzz/run.sh [SECONDS_PER_TARGET] [TARGET...]   (default 60 s, every target)
#
# Each target reads its committed seeds (tests/fuzz/seeds/<target>, never written) and
# grows tests/fuzz/corpus/<target> (gitignored). A crash stops that target; its input is
# written to tests/fuzz/artifacts/<target>/ and the script exits non-zero at the end.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/../.."
FUZZ=tests/fuzz
SECS="${1:-60}"
shift || true
TARGETS=("$@")
if ((${#TARGETS[@]} == 0)); then
    TARGETS=(frame decompress msg command hello scram)
fi

if ! command -v cargo-fuzz >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked
fi
# cargo-fuzz passes nightly-only flags (-Zsanitizer=address and friends); only stable
# toolchains are installed, and this lets a stable rustc accept them.
export RUSTC_BOOTSTRAP=1
# 16 codegen units: a build in a few minutes on 2 cores, for a few percent of speed.
BUILD=(--fuzz-dir "$FUZZ" --codegen-units 16)
cargo fuzz build "${BUILD[@]}"

LOGS="$FUZZ/target/run-logs"
mkdir -p "$LOGS"
rows=()
failed=0
for t in "${TARGETS[@]}"; do
    mkdir -p "$FUZZ/corpus/$t" "$FUZZ/artifacts/$t" "$FUZZ/seeds/$t"
    before=$(find "$FUZZ/artifacts/$t" -type f | wc -l)
    echo "run.sh: fuzzing $t for ${SECS}s" >&2
    rc=0
    cargo fuzz run "${BUILD[@]}" "$t" "$FUZZ/corpus/$t" "$FUZZ/seeds/$t" -- \
        -max_total_time="$SECS" -timeout=10 -print_final_stats=1 \
        -artifact_prefix="$FUZZ/artifacts/$t/" >"$LOGS/$t.log" 2>&1 || rc=$?
    after=$(find "$FUZZ/artifacts/$t" -type f | wc -l)
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$LOGS/$t.log" | tail -1)
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$LOGS/$t.log" | tail -1)
    corp=$(grep -o 'corp: [0-9]*' "$LOGS/$t.log" | tail -1 | cut -d' ' -f2)
    crashes=$((after - before))
    if ((rc != 0 || crashes != 0)); then
        failed=1
        echo "run.sh: $t failed (exit $rc); see $LOGS/$t.log and $FUZZ/artifacts/$t/" >&2
    fi
    rows+=("$t ${SECS} ${execs:-?} ${rate:-?} ${corp:-?} $crashes")
done

printf '\n%-11s %8s %12s %8s %8s %8s\n' target seconds executions exec/s corpus crashes
for r in "${rows[@]}"; do
    # shellcheck disable=SC2086
    printf '%-11s %8s %12s %8s %8s %8s\n' $r
done
exit "$failed"
