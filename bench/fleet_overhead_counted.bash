# Part of bench/fleet_overhead.sh, sourced by it when BENCH_COUNT=1: the counted mode.
#
# Why. Timed CPU per request on a shared VM scatters by 10–15 % from one 10 s run to the next
# (frequency, steal, the host's other guests), so a 2 % difference needs far more rounds than a
# session has. What the request path does can be counted instead, with the same gateway, the same
# configurations (A: SQLite, B: fleet mode on Redis) and the same load:
#   - the user-space instructions each thread executes, under valgrind's callgrind (a count, not a
#     sample: it does not move with the machine's load), zeroed after the warm-up and dumped after
#     the measured run, per thread (--separate-threads=yes); the worker's event loop is the thread
#     that executed the most (with `workers: 1` it serves every request);
#   - the system calls each thread makes, counted by the kernel's raw_syscalls:sys_enter
#     tracepoint (`perf stat --per-thread`) over the measured run of a gateway running natively;
#     the worker is the thread named cutover-w0.
# Both per request completed by wrk. Instructions are not time (cache misses are not in them, nor
# the kernel's work, whose share the system calls stand for), but identical counts mean the
# workers do the same work: a cost fleet mode added to the request path would show here.
#
# Per round: A native (system calls), B native, A under callgrind (instructions), B under
# callgrind; BENCH_ROUNDS rounds (default 3 here). Under callgrind the gateway runs about 50×
# slower, so wrk's closed loop simply waits for it; the checks of the timed mode (the window, the
# store, the migration not moving) run on every run.

for tool in valgrind callgrind_control perf; do
  command -v "$tool" >/dev/null || fail "'$tool' not found (run scripts/install-deps.sh)"
done
perf stat -e raw_syscalls:sys_enter -x, -o /dev/null -- true 2>/dev/null ||
  fail "perf cannot count the raw_syscalls:sys_enter tracepoint here (perf_event_paranoid, tracefs)"

declare -A IR_WORKER IR_OTHERS_S IR_TOTAL SYS_WORKER SYS_OTHERS_S C_REQS C_SYSREQS C_RPS IR_PROJECTED

# measured_wrk NAME [WRAPPER...]: the measured wrk run against the gateway, under WRAPPER.
measured_wrk() {
  local name="$1"
  shift
  "$@" taskset -c "$LOAD_CPU" wrk -t"$WRK_THREADS" -c"$CONNECTIONS" -d"${DURATION}s" --timeout 30s \
    -s "$BENCH/fleet_overhead.lua" "http://127.0.0.1:$GATEWAY_PORT/v1/chat/completions" >"$TMP/wrk-$name.txt"
  grep -q '^BENCH ' "$TMP/wrk-$name.txt" || { cat "$TMP/wrk-$name.txt" >&2; fail "$name: wrk printed no summary"; }
  local bad
  bad=$(($(kv non2xx "$TMP/wrk-$name.txt") + $(kv connect_errors "$TMP/wrk-$name.txt") + \
    $(kv read_errors "$TMP/wrk-$name.txt") + $(kv write_errors "$TMP/wrk-$name.txt") + $(kv timeouts "$TMP/wrk-$name.txt")))
  ((bad == 0)) || fail "$name: $bad measured requests were not 2xx or failed"
}

# check_window NAME MODE STATUS_BEFORE REQUESTS: the store is the mode's, the migration did not move,
# and its window counted every request of the run.
check_window() {
  local name="$1" mode="$2" before="$3" requests="$4" want=sqlite after
  local kind0 up0 lead0 phase0 w0 rw0 gen0 p0 k0 kind1 up1 lead1 phase1 w1 rw1 gen1 p1 k1
  [[ "$mode" == B ]] && want=redis
  sleep "$(awk -v ms="$INTERVAL_MS" 'BEGIN { printf "%.3f", 4 * ms / 1000 + 0.5 }')"
  after="$(migration_status)"
  read -r kind0 up0 lead0 phase0 w0 rw0 gen0 p0 k0 <<<"$before"
  read -r kind1 up1 lead1 phase1 w1 rw1 gen1 p1 k1 <<<"$after"
  [[ "$kind0" == "$want" && "$kind1" == "$want" && "$phase0" == canary && "$phase1" == canary && "$gen0" == "$gen1" ]] &&
    same_weight "$w1" && same_weight "$rw1" || fail "$name: the store or the migration changed: $before -> $after"
  [[ "$mode" == A ]] || [[ "$up1" == true && "$lead1" == true ]] || fail "$name: the fleet store was not up and leading: $after"
  (((p1 + k1) - (p0 + k0) >= requests)) || fail "$name: the window counted $(((p1 + k1) - (p0 + k0))) of $requests requests"
}

# count_syscalls MODE ROUND: a native gateway; system calls per thread over the measured run.
count_syscalls() {
  local mode="$1" r="$2" name="sys-$1$2" before requests seconds
  KEY_PREFIX="fo-sys-$mode$r"
  REPLICA="bench-sys-$mode$r"
  start_gateway "$mode" "$name"
  taskset -c "$LOAD_CPU" wrk -t"$WRK_THREADS" -c"$CONNECTIONS" -d"${WARMUP}s" --timeout 5s \
    -s "$BENCH/fleet_overhead.lua" "http://127.0.0.1:$GATEWAY_PORT/v1/chat/completions" >/dev/null
  before="$(migration_status)"
  measured_wrk "$name" perf stat --per-thread -x, -e raw_syscalls:sys_enter -p "$GATEWAY_PID" -o "$TMP/$name.perf" --
  requests="$(kv requests "$TMP/wrk-$name.txt")"
  seconds="$(awk -v us="$(kv duration_us "$TMP/wrk-$name.txt")" 'BEGIN { print us / 1e6 }')"
  check_window "$name" "$mode" "$before" "$requests"
  # perf's lines: COMM-TID,COUNT,,raw_syscalls:sys_enter,...
  read -r SYS_WORKER[$mode,$r] SYS_OTHERS_S[$mode,$r] <<<"$(awk -F, -v n="$requests" -v s="$seconds" '
    $4 ~ /raw_syscalls:sys_enter/ { if ($1 ~ /^cutover-w0-[0-9]+$/) { w += $2; found = 1 } else o += $2 }
    END { if (!found) exit 1; printf "%.3f %.1f\n", w / n, o / s }' "$TMP/$name.perf")" ||
    { cat "$TMP/$name.perf" >&2; fail "$name: perf counted no thread named cutover-w0"; }
  C_SYSREQS[$mode,$r]="$requests"
  C_RPS[$mode,$r]="$(awk -v n="$requests" -v s="$seconds" 'BEGIN { printf "%.0f", n / s }')"
  stop_gateway
  log "round $r, $mode (native): $requests requests; system calls: worker ${SYS_WORKER[$mode,$r]} per request, other threads ${SYS_OTHERS_S[$mode,$r]} per second"
}

# count_instructions MODE ROUND: the gateway under callgrind; instructions per thread over the
# measured run.
count_instructions() {
  local mode="$1" r="$2" name="ir-$1$2" before requests seconds dir="$TMP/callgrind-$1$2"
  KEY_PREFIX="fo-ir-$mode$r"
  REPLICA="bench-ir-$mode$r"
  mkdir -p "$dir"
  LAUNCH_PREFIX=(valgrind --tool=callgrind --separate-threads=yes --dump-line=no --compress-strings=no
    "--callgrind-out-file=$dir/out")
  STARTUP_TRIES=3000
  start_gateway "$mode" "$name"
  LAUNCH_PREFIX=()
  STARTUP_TRIES=100
  taskset -c "$LOAD_CPU" wrk -t"$WRK_THREADS" -c"$CONNECTIONS" -d"${WARMUP}s" --timeout 30s \
    -s "$BENCH/fleet_overhead.lua" "http://127.0.0.1:$GATEWAY_PORT/v1/chat/completions" >/dev/null
  before="$(migration_status)"
  callgrind_control -z "$GATEWAY_PID" >/dev/null || fail "$name: callgrind_control -z failed"
  measured_wrk "$name"
  callgrind_control -d "$GATEWAY_PID" >/dev/null || fail "$name: callgrind_control -d failed"
  requests="$(kv requests "$TMP/wrk-$name.txt")"
  seconds="$(awk -v us="$(kv duration_us "$TMP/wrk-$name.txt")" 'BEGIN { print us / 1e6 }')"
  check_window "$name" "$mode" "$before" "$requests"
  # The dump after the zeroing: one file per thread, each with its `totals:` (Ir).
  read -r IR_WORKER[$mode,$r] IR_OTHERS_S[$mode,$r] IR_TOTAL[$mode,$r] <<<"$(
    for f in "$dir"/out.*; do awk '/^(totals|summary):/ { print $2; exit }' "$f"; done | sort -g | awk -v n="$requests" -v s="$seconds" '
      { v[NR] = $1; t += $1 } END { if (NR < 2 || !n) exit 1; printf "%.0f %.0f %.0f\n", v[NR] / n, (t - v[NR]) / s, t / n }')" ||
    { ls -la "$dir" >&2; fail "$name: no per-thread callgrind dump in $dir"; }
  C_REQS[$mode,$r]="$requests"
  # The other threads' work does not scale with requests; at the native run's rate it is spread
  # over that many requests a second (under callgrind, over about 50 times fewer).
  IR_PROJECTED[$mode,$r]="$(awk -v w="${IR_WORKER[$mode,$r]}" -v o="${IR_OTHERS_S[$mode,$r]}" -v rps="${C_RPS[$mode,$r]}" \
    'BEGIN { printf "%.0f", w + o / rps }')"
  stop_gateway
  log "round $r, $mode (callgrind): $requests requests; instructions: worker ${IR_WORKER[$mode,$r]} per request, other threads ${IR_OTHERS_S[$mode,$r]} per second, all threads ${IR_TOTAL[$mode,$r]} per request"
}

for r in $(seq "$ROUNDS"); do
  log "counted round $r of $ROUNDS: ${WARMUP}s warm-up + ${DURATION}s measured per run, $CONNECTIONS connections"
  for m in "${MODES[@]}"; do count_syscalls "$m" "$r"; done
  for m in "${MODES[@]}"; do count_instructions "$m" "$r"; done
done

median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
per_round() { # per_round TABLE MODE -> "x/y/z"
  local -n table="$1"
  local r values=()
  for r in $(seq "$ROUNDS"); do values+=("${table[$2,$r]}"); done
  (IFS=/; echo "${values[*]}")
}
median_of() { # median_of TABLE MODE
  local -n table="$1"
  local r values=()
  for r in $(seq "$ROUNDS"); do values+=("${table[$2,$r]}"); done
  median "${values[@]}"
}
# spread_of TABLE: max − min over every run of both modes, in % of the overall median: how far
# the count moves between runs at all (if B's differs from A's by less, no difference shows).
spread_of() {
  local -n table="$1"
  printf '%s\n' "${table[@]}" | sort -g | awk '{ v[NR] = $1 } END { m = NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2; printf "%.2f", m ? 100 * (v[NR] - v[1]) / m : 0 }'
}
change() { awk -v b="$1" -v a="$2" 'BEGIN { printf "%+.2f %%", a ? 100 * (b / a - 1) : 0 }'; }
inside() { awk -v b="$1" -v a="$2" -v t="$TARGET_PCT" 'BEGIN { d = a ? 100 * (b / a - 1) : 0; if (d < 0) d = -d; exit !(d <= t) }'; }

declare -A CM
for m in "${MODES[@]}"; do
  CM[ir,$m]="$(median_of IR_WORKER "$m")"
  CM[irt,$m]="$(median_of IR_TOTAL "$m")"
  CM[irp,$m]="$(median_of IR_PROJECTED "$m")"
  CM[rps,$m]="$(median_of C_RPS "$m")"
  CM[iro,$m]="$(median_of IR_OTHERS_S "$m")"
  CM[sys,$m]="$(median_of SYS_WORKER "$m")"
  CM[syso,$m]="$(median_of SYS_OTHERS_S "$m")"
done
verdict_counted() { # verdict_counted B A SPREAD
  if inside "$1" "$2"; then
    if awk -v s="$3" -v t="$TARGET_PCT" 'BEGIN { exit !(s <= t) }'; then echo "met (runs agree within $3 %)"; else echo "met, but the runs scatter by $3 %"; fi
  else
    echo "**missed**"
  fi
}

{
  echo "## cutover fleet overhead, counted (issue #12, \"the request path pays nothing\"): $STARTED"
  echo
  echo "Gateway \`$BIN\` (built $(date -u -r "$BIN" '+%Y-%m-%d %H:%M UTC'); this checkout: $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)), \`workers: 1\`, access log off, on CPU $GATEWAY_CPU; wrk ($CONNECTIONS connections, $USERS users by X-User-Id), nginx (a fixed $ANSWER_BYTES-byte answer, primary and candidate) and redis-server $REDIS_VERSION on CPU $LOAD_CPU; the same configurations as the timed mode (A: SQLite, B: fleet mode on Redis, this replica leading; canary at $WEIGHT_PCT %, evaluation_interval $INTERVAL). $ROUNDS rounds; per run ${WARMUP}s warm-up and ${DURATION}s measured. Instructions: $(valgrind --version) callgrind, per thread, zeroed after the warm-up and dumped after the measured run. System calls: the raw_syscalls:sys_enter tracepoint per thread (\`perf stat --per-thread\`), native runs."
  echo
  echo "| mode | worker: instructions per request | per round | other threads: instructions per second | all threads: instructions per request at the native rate | worker: system calls per request | per round | other threads: system calls per second | native req/s (with perf counting) | requests per round (callgrind; native) |"
  echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|"
  for m in "${MODES[@]}"; do
    echo "| ${M_LABEL[$m]} | ${CM[ir,$m]} | $(per_round IR_WORKER "$m") | ${CM[iro,$m]} | ${CM[irp,$m]} | ${CM[sys,$m]} | $(per_round SYS_WORKER "$m") | ${CM[syso,$m]} | ${CM[rps,$m]} | $(per_round C_REQS "$m"); $(per_round C_SYSREQS "$m") |"
  done
  echo
  echo "| measure (B against A, medians) | B / A | spread of all runs | verdict (target: within $TARGET_PCT %) |"
  echo "|---|---:|---:|---|"
  echo "| the worker's instructions per request (the request path) | $(change "${CM[ir,B]}" "${CM[ir,A]}") | $(spread_of IR_WORKER) % | $(verdict_counted "${CM[ir,B]}" "${CM[ir,A]}" "$(spread_of IR_WORKER)") |"
  echo "| the worker's system calls per request | $(change "${CM[sys,B]}" "${CM[sys,A]}") | $(spread_of SYS_WORKER) % | $(verdict_counted "${CM[sys,B]}" "${CM[sys,A]}" "$(spread_of SYS_WORKER)") |"
  echo "| all threads' instructions per request at the native rate (the engine's Redis work included) | $(change "${CM[irp,B]}" "${CM[irp,A]}") | $(spread_of IR_PROJECTED) % | $(verdict_counted "${CM[irp,B]}" "${CM[irp,A]}" "$(spread_of IR_PROJECTED)") |"
  echo
  echo "The other threads' instructions per second are what does not scale with requests (the engine's evaluations, with its Redis calls in B, the usage writer, the admin API). Under callgrind a run serves about 50 times fewer requests a second than natively, which would weigh them 50 times more per request than a real load does; the all-threads column spreads them over the native run's requests per second instead: worker instructions per request + other threads' instructions per second ÷ native req/s, per round."
} >"$OUT_DIR/fleet_overhead_counted.md"

echo
cat "$OUT_DIR/fleet_overhead_counted.md"
echo
echo "(written to bench/out/fleet_overhead_counted.md)"
