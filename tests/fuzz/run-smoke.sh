#!/bin/sh
# run-smoke.sh BUILD_DIR [SECONDS] -- a short run of every fuzz harness.
#
# BUILD_DIR is a tree configured with --enable-fuzzing CC=clang where the
# harnesses, one per fuzz_*.c here, are built. Each first replays the
# inputs kept in regress/<harness>/ (crashers found before), then fuzzes
# for SECONDS (default 20) starting from a copy of corpus/<harness>/, so
# the source tree is left as it was. A crashing input is kept under
# BUILD_DIR/fuzz-artifacts/<harness>/. Exits non-zero if any harness fails.

set -u

if [ $# -lt 1 ] || [ $# -gt 2 ]; then
	echo "usage: $0 BUILD_DIR [SECONDS]" >&2
	exit 2
fi
build=$1
seconds=${2:-20}
here=$(cd "$(dirname "$0")" && pwd)
tmp=$(mktemp -d "${TMPDIR:-/tmp}/aeolus-fuzz.XXXXXX") || exit 2
trap 'rm -rf "$tmp"' EXIT INT TERM

passed=0
failed=0
for src in "$here"/fuzz_*.c; do
	h=$(basename "$src" .c)
	h=${h#fuzz_}
	bin=$build/tests/fuzz/fuzz_$h
	log=$tmp/$h.log
	if [ ! -x "$bin" ]; then
		echo "fuzz_$h: FAILED: $bin not built (make tests/fuzz/fuzz_$h)"
		failed=$((failed + 1))
		continue
	fi
	mkdir -p "$tmp/$h/corpus" "$tmp/$h/artifacts"
	if [ -d "$here/corpus/$h" ]; then
		cp "$here/corpus/$h/"* "$tmp/$h/corpus/"
	fi
	ok=1
	what=

	# Replay the regression inputs, one run each.
	nreg=0
	if [ -d "$here/regress/$h" ]; then
		for f in "$here/regress/$h/"*; do
			[ -f "$f" ] || continue
			nreg=$((nreg + 1))
			if ! "$bin" -runs=1 "$f" >"$log" 2>&1; then
				ok=0
				what="crashes on regress/$h/$(basename "$f")"
				break
			fi
		done
	fi

	# Then fuzz.
	if [ $ok = 1 ]; then
		if "$bin" -max_len=65536 -max_total_time="$seconds" -timeout=10 \
		    -print_final_stats=1 -artifact_prefix="$tmp/$h/artifacts/" \
		    "$tmp/$h/corpus" >"$log" 2>&1; then
			execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
			what="$nreg regression inputs, ${execs:-?} runs in ${seconds}s"
		else
			ok=0
			mkdir -p "$build/fuzz-artifacts/$h"
			cp "$tmp/$h/artifacts/"* "$build/fuzz-artifacts/$h/" 2>/dev/null
			what="crashed; input kept in $build/fuzz-artifacts/$h/"
		fi
	fi

	if [ $ok = 1 ]; then
		echo "fuzz_$h: ok ($what)"
		passed=$((passed + 1))
	else
		echo "fuzz_$h: FAILED: $what"
		# What the harness or the sanitizer said just before dying.
		grep -E -B 3 -m 1 '==[0-9]+== ?ERROR|runtime error' "$log" | sed 's/^/    /'
		failed=$((failed + 1))
	fi
done

echo "$passed passed, $failed failed"
[ $failed = 0 ]
