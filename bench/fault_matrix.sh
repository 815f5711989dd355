#!/usr/bin/env bash
# The fault matrix, long form (issue #11): tests/node/fault_matrix.test.mjs played in longer
# variants, its tables written to docs/fault-matrix.md.
#
#   bash bench/fault_matrix.sh
#
# Variants (FM_VARIANTS, space-separated, default "sequential paced"):
#   sequential  FM_SEQUENTIAL_N (30) calls per side, one at a time, as the issue describes
#   paced       FM_PACED_N (60) calls per side started at 20 per second, up to 20 in flight
#   short       the ctest form (20 per side, per-scenario concurrency)
# FAULT_MATRIX_SCENARIOS (comma-separated row names) and FAULT_MATRIX_SEED pass through;
# FM_DOC names the output (default docs/fault-matrix.md). Loopback only; every request and every
# scenario is bounded in time by the test itself. Needs `npm ci` in tests/node (make node-deps)
# and a built binary (CUTOVER_BINARY, default build/cutover).
#
# Checks that fail (the known gateway bugs the matrix is there to show) do not stop the run: the
# tables are written anyway, and the script exits 1 when any check failed.
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BIN="${CUTOVER_BINARY:-$ROOT/build/cutover}"
[[ $BIN == /* ]] || BIN="$PWD/$BIN"
DOC="${FM_DOC:-$ROOT/docs/fault-matrix.md}"
VARIANTS="${FM_VARIANTS:-sequential paced}"
SEQUENTIAL_N="${FM_SEQUENTIAL_N:-30}"
PACED_N="${FM_PACED_N:-60}"
[[ -x "$BIN" ]] || { echo "fault_matrix: $BIN not found; build first (make build)" >&2; exit 1; }
[[ -d "$ROOT/tests/node/node_modules/openai" ]] || { echo "fault_matrix: run make node-deps first" >&2; exit 1; }

TMP="$(mktemp -d "${TMPDIR:-/tmp}/cutover-fault-matrix.XXXXXX")"
trap 'rm -rf "$TMP"' EXIT

status=0
reports=()
commands=()
for variant in $VARIANTS; do
  case $variant in
    sequential) settings=(FAULT_MATRIX_N="$SEQUENTIAL_N" FAULT_MATRIX_CONCURRENCY=1 FAULT_MATRIX_RATE=0) ;;
    paced) settings=(FAULT_MATRIX_N="$PACED_N" FAULT_MATRIX_CONCURRENCY=20 FAULT_MATRIX_RATE=20) ;;
    short) settings=() ;;
    *) echo "fault_matrix: unknown variant '$variant'" >&2; exit 2 ;;
  esac
  report="$TMP/$variant.json"
  label="$variant"
  case $variant in
    sequential) label="sequential: $SEQUENTIAL_N calls per side, one at a time" ;;
    paced) label="paced: $PACED_N calls per side at 20 req/s, up to 20 in flight" ;;
    short) label="short form (as in ctest)" ;;
  esac
  command="cd tests/node && ${settings[*]:+${settings[*]} }CUTOVER_BINARY=${CUTOVER_BINARY:-../../build/cutover} node --test fault_matrix.test.mjs"
  echo "== fault matrix, $label"
  echo "   $command"
  (
    cd "$ROOT/tests/node" &&
      env "${settings[@]}" CUTOVER_BINARY="$BIN" FAULT_MATRIX_REPORT="$report" FAULT_MATRIX_LABEL="$label" \
        node --test fault_matrix.test.mjs
  ) >"$TMP/$variant.log" 2>&1
  rc=$?
  # The table and the failed checks, as the test printed them.
  grep -E '^(# )?(\||fault matrix \(|  FAIL )' "$TMP/$variant.log" | sed -E 's/^# //' || true
  if [[ ! -s $report ]]; then
    echo "fault_matrix: the $variant run wrote no report (exit $rc); its log ends with:" >&2
    tail -n 40 "$TMP/$variant.log" >&2
    status=1
    continue
  fi
  ((rc == 0)) || status=1
  reports+=("$report")
  commands+=("$command")
done
((${#reports[@]})) || exit 1

mkdir -p "$(dirname "$DOC")"
node - "$DOC" "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$(nproc)" "$("$BIN" version 2>/dev/null | head -1)" \
  "$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)$(git -C "$ROOT" diff --quiet HEAD -- src 2>/dev/null || echo ' with uncommitted changes in src/')" "${#reports[@]}" "${reports[@]}" "${commands[@]}" <<'NODE'
const fs = require('node:fs');
const [doc, date, cores, version, commit, count, ...rest] = process.argv.slice(2);
const reports = rest.slice(0, Number(count)).map((file) => JSON.parse(fs.readFileSync(file, 'utf8')));
const commands = rest.slice(Number(count));
const out = [];
out.push('# Fault matrix');
out.push('');
out.push('What a client using the official `openai` Node SDK (default retries: 2, honouring `retry-after-ms` /');
out.push('`Retry-After` up to 60 s and `x-should-retry`) sees when the provider misbehaves, once **directly**');
out.push('against a fake provider and once **through cutover** in front of a second fake provider with the same');
out.push('seed. Each request names itself in its prompt, so both fake providers make the same decision for the');
out.push('same request\'s n-th attempt. Scenarios are in `tests/node/support/fault_provider.mjs`; the suite is');
out.push('`tests/node/fault_matrix.test.mjs` (short form in `ctest -R node.fault_matrix`); this file is written by');
out.push('`bash bench/fault_matrix.sh`.');
out.push('');
out.push('Columns:');
out.push('');
out.push('- **direct ok/N**, **through ok/N**: requests that succeeded with the complete answer (a stream the SDK');
out.push('  finished without error but with missing content counts as `truncated`, not ok).');
out.push('- **direct failures**, **through failures**: the other requests by class: an HTTP status with the error');
out.push('  code (`503:circuit_open`), `stream_error:CODE` (an error event inside a stream), `connection_error`,');
out.push('  `sdk_timeout`, `terminated` (the body broke off), `bad_json` (the SDK could not parse what it got),');
out.push('  `truncated` / `wrong_content` (accepted but incomplete), `hang` (unfinished after the hang guard).');
out.push('- **SDK attempts**: HTTP requests the SDK sent, retries included.');
out.push('- **provider attempts**: requests the fake provider received (for TLS: handshakes it saw fail);');
out.push('  `+K fallback` is what the healthy fallback provider received.');
out.push('- **checks**: the assertions on the through side: `alive`/`healthz` (the gateway still runs), `no_hang`,');
out.push('  `no_silent_truncation`, `openai_error_schema` (every failure is an OpenAI-schema error with a request');
out.push('  id), `bounded_attempts` (at most 3 provider attempts per SDK attempt), `never_worse_than_direct`');
out.push('  (through ok >= direct ok, where the direct side could succeed), `fallback_hides_errors`, `expected_statuses`.');
out.push('');
out.push(`Run of ${date} on ${cores} cores, loopback only; \`cutover version\`: ${version || '?'}; commit ${commit}.`);
reports.forEach((report, index) => {
  out.push('');
  out.push(`## ${report.label} (seed ${report.seed})`);
  out.push('');
  out.push('```sh');
  out.push(commands[index]);
  out.push('```');
  out.push('');
  out.push(report.table);
  const failed = report.rows.filter((row) => row.violations.length);
  if (failed.length) {
    out.push('');
    out.push('Failed checks:');
    out.push('');
    for (const row of failed) {
      for (const v of row.violations) out.push(`- ${row.name}, \`${v.check}\`: ${v.message.split('\n')[0]}`);
      if (row.gatewayLog) out.push(`  (${row.gatewayLog})`);
    }
  }
});
out.push('');
fs.writeFileSync(doc, out.join('\n'));
console.log(`fault_matrix: wrote ${doc}`);
NODE
exit "$status"
