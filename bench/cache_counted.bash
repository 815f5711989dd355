# Part of bench/cache.sh, sourced by it when BENCH_COUNT=1: the counted summary.
#
# The timed figures of this shared VM scatter by 10–15 % from run to run, more than the quota
# target (1 %) and the miss target (5 %) can be told from. In the counted mode the gateway runs
# under valgrind's callgrind and each measured run's instructions are zeroed before it and dumped
# after it (`callgrind_control -z` / `-d`); the worker's event loop (the thread that executed the
# most: with `workers: 1` it serves every request) divided by the requests wrk completed is the
# run's figure. The same checks as the timed mode hold in every run (misses miss, hits hit and
# never reach nginx). Instructions are not time: cache misses, the kernel's work and what the
# cache's own thread does (a fleet-shared cache's Redis I/O) are not in them; the system calls a
# hit spares (no upstream exchange) make the real gap larger than the count's.

median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
declare -A IR_MEDIAN IR_SPREAD IR_ROUNDS
for id in "${RUN_IDS[@]}"; do
  values=()
  for r in $(seq "$ROUNDS_RUN"); do values+=("${IR[$id,$r]}"); done
  IR_MEDIAN[$id]="$(median "${values[@]}")"
  IR_SPREAD[$id]="$(printf '%s\n' "${values[@]}" | sort -g | awk -v m="${IR_MEDIAN[$id]}" 'NR == 1 { lo = $1 } { hi = $1 } END { printf "%.2f", m ? 100 * (hi - lo) / m : 0 }')"
  IR_ROUNDS[$id]="$(IFS=/; echo "${values[*]}")"
done
counted_ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", b ? a / b : 0 }'; }
HIT_X="$(counted_ratio "${IR_MEDIAN[a]}" "${IR_MEDIAN[c]}")"
MISS_X="$(counted_ratio "${IR_MEDIAN[b]}" "${IR_MEDIAN[a]}")"
QUOTA_X="$(counted_ratio "${IR_MEDIAN[d]}" "${IR_MEDIAN[e]}")"
HEADERS_X="$(counted_ratio "${IR_MEDIAN[d]}" "${IR_MEDIAN[a]}")"
counted_verdict() { awk -v x="$1" -v op="$2" -v t="$3" 'BEGIN { ok = op == ">=" ? x >= t : x <= t; print ok ? "met" : "**missed**" }'; }

{
  echo "## cutover response cache and quota bookkeeping, counted (issue #15): $(date -u '+%Y-%m-%d %H:%M UTC')"
  echo
  echo "Gateway \`$BIN\` (built $(date -u -r "$BIN" '+%Y-%m-%d %H:%M UTC'); this checkout: $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)) under $(valgrind --version) callgrind, \`workers: 1\`, access log $ACCESS_LOG, on CPU $GATEWAY_CPU; wrk ($CONNECTIONS connections) and nginx (a fixed $ANSWER_BYTES-byte answer) on CPU $LOAD_CPU. $ROUNDS_RUN rounds of a, d, e, b, c; per run ${WARMUP}s warm-up, then ${DURATION}s counted. Figures: the worker thread's instructions per request (median over the rounds; spread = (max − min) / median)."
  echo
  echo "| run | instructions per request | spread | per round | cache hits / misses (last round) | nginx saw (last round) |"
  echo "|---|---:|---:|---:|---:|---:|"
  for id in "${RUN_IDS[@]}"; do
    echo "| ${R_LABEL[$id]} | ${IR_MEDIAN[$id]} | ${IR_SPREAD[$id]} % | ${IR_ROUNDS[$id]} | ${HITS[$id,$ROUNDS_RUN]} / ${MISSES[$id,$ROUNDS_RUN]} | ${NGINX_N[$id,$ROUNDS_RUN]} |"
  done
  echo
  echo "| target (issue #15), counted | measured | verdict |"
  echo "|---|---|---|"
  echo "| a hit costs at most a fifth of a proxied request: a / c ≥ 5 | ${IR_MEDIAN[a]} / ${IR_MEDIAN[c]} = $HIT_X × | $(counted_verdict "$HIT_X" ">=" 5) |"
  echo "| a miss costs at most 5 % more than no cache: b / a ≤ 1.05 | ${IR_MEDIAN[b]} / ${IR_MEDIAN[a]} = $MISS_X | $(counted_verdict "$MISS_X" "<=" 1.05) |"
  echo "| quota bookkeeping costs ≤ 1 %: d / e ≤ 1.01 | ${IR_MEDIAN[d]} / ${IR_MEDIAN[e]} = $QUOTA_X | $(counted_verdict "$QUOTA_X" "<=" 1.01) |"
  echo "| (no target) the six headers' whole cost, receiving and parsing them included: d / a | ${IR_MEDIAN[d]} / ${IR_MEDIAN[a]} = $HEADERS_X | |"
} >"$REPORT"

echo
cat "$REPORT"
echo
echo "(written to ${REPORT#"$ROOT/"})"
