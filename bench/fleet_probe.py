#!/usr/bin/env python3
"""The measuring side of bench/fleet.sh: polls a fleet of cutover replicas' admin APIs.

Every replica is given as NAME=ADMIN_PORT[:PID[:LOG]] (loopback only); the admin token is read
from the variable named by --token-env. Keep-alive connections, one per replica.

  propagation  drives --count transitions on ONE replica (set-weight, alternating between two
               weights) and, for each, polls every replica every --poll-ms until all of them report
               the new weight as `routed_weight`; writes every sample as JSON to --out.
  failover     one round: finds the leader (`store.leading`), reads the lease's remaining time in
               Redis (PTTL), SIGKILLs the leader, polls the others until one reports
               `leading: true`, then until that one's next evaluation; writes the round to --out.
  converged    waits until every replica answers with the same generation and routed weight, the
               store up, and exactly one leader; prints a line per replica.

Python standard library only.
"""

import argparse
import http.client
import json
import os
import random
import re
import signal
import socket
import sys
import time
from datetime import datetime


def now_ms() -> float:
    return time.time() * 1000.0


class Replica:
    def __init__(self, spec: str, token: str):
        name, _, rest = spec.partition("=")
        parts = rest.split(":")
        self.name = name
        self.port = int(parts[0])
        self.pid = int(parts[1]) if len(parts) > 1 and parts[1] else None
        self.log = parts[2] if len(parts) > 2 and parts[2] else None
        self.headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        self.connection = None

    def request(self, method: str, path: str, body=None, timeout: float = 2.0):
        """(status, parsed JSON); one retry on a fresh connection (the replica may have restarted)."""
        payload = json.dumps(body).encode() if body is not None else None
        for attempt in (0, 1):
            try:
                if self.connection is None:
                    self.connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
                self.connection.request(method, path, body=payload, headers=self.headers)
                response = self.connection.getresponse()
                data = response.read()
                return response.status, json.loads(data) if data else None
            except (OSError, http.client.HTTPException, ValueError):
                self.close()
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def status(self, migration: str, timeout: float = 2.0):
        status, body = self.request("GET", f"/admin/v1/migrations/{migration}", timeout=timeout)
        if status != 200:
            raise RuntimeError(f"{self.name}: GET status answered {status}: {body}")
        return body

    def close(self):
        if self.connection is not None:
            self.connection.close()
            self.connection = None


def replicas_from(args):
    token = os.environ.get(args.token_env, "")
    if not token:
        sys.exit(f"fleet_probe: ${args.token_env} is empty")
    return [Replica(spec, token) for spec in args.replica]


def percentile(values, q):
    """Nearest rank: the smallest value with at least q of the samples at or below it."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    rank = max(1, -(-len(ordered) * q // 1))
    return ordered[int(rank) - 1]


def redis_command(port: int, *words: str, password: str = "") -> bytes:
    """One command over RESP on 127.0.0.1 (enough for PTTL); returns the raw reply line."""
    with socket.create_connection(("127.0.0.1", port), timeout=1.0) as sock:
        def send(items):
            out = f"*{len(items)}\r\n".encode()
            for item in items:
                encoded = item.encode()
                out += b"$%d\r\n%s\r\n" % (len(encoded), encoded)
            sock.sendall(out)

        if password:
            send(["AUTH", password])
            sock.recv(256)
        send(list(words))
        return sock.recv(4096).split(b"\r\n", 1)[0]


def log_time_ms(path: str, pattern: str):
    """Unix ms of the last log line matching pattern (the log's local-time stamp, ms precision)."""
    found = None
    try:
        with open(path, encoding="utf-8", errors="replace") as log:
            for line in log:
                if re.search(pattern, line):
                    found = line
    except OSError:
        return None
    if not found:
        return None
    stamp = found.split(" ", 1)[0]
    try:
        return datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S.%f").timestamp() * 1000.0
    except ValueError:
        return None


# ---------------------------------------------------------------------------------------------
def propagation(args):
    replicas = replicas_from(args)
    driver = next((r for r in replicas if r.name == args.drive), None)
    if driver is None:
        sys.exit(f"fleet_probe: no replica named {args.drive}")
    weights = [float(w) for w in args.weights.split(",")]
    poll = args.poll_ms / 1000.0
    random.seed(args.seed)
    samples = []
    conflicts = 0
    failures = []
    current = driver.status(args.migration)
    generation = current["generation"]
    started = time.monotonic()
    for index in range(args.count):
        if time.monotonic() - started > args.budget:
            failures.append(f"stopped after {index} transitions: the {args.budget:.0f} s budget ran out")
            break
        target = weights[index % len(weights)]
        if abs(current["weight"] - target) < 1e-9:
            target = weights[(index + 1) % len(weights)]
        # A random pause first, so that commits fall anywhere within the replicas' polling tick.
        time.sleep(random.uniform(0, args.interval_ms / 1000.0))
        sent = now_ms()
        status, body = driver.request(
            "POST", f"/admin/v1/migrations/{args.migration}/set-weight",
            {"generation": generation, "weight": target, "actor": "fleet-bench",
             "reason": f"propagation {index + 1}"})
        answered = now_ms()
        if status == 409:
            conflicts += 1
            current = driver.status(args.migration)
            generation = current["generation"]
            continue
        if status != 200:
            failures.append(f"transition {index + 1}: set-weight answered {status}: {body}")
            break
        generation = body["generation"]
        committed = float(body["transition"]["at_unix_ms"])
        seen = {}
        deadline = time.monotonic() + args.timeout
        while len(seen) < len(replicas) and time.monotonic() < deadline:
            tick = time.monotonic()
            for replica in replicas:
                if replica.name in seen:
                    continue
                state = replica.status(args.migration)
                if state["generation"] >= generation and abs(state["routed_weight"] - target) < 1e-9:
                    seen[replica.name] = now_ms()
            rest = poll - (time.monotonic() - tick)
            if rest > 0 and len(seen) < len(replicas):
                time.sleep(rest)
        if len(seen) < len(replicas):
            missing = sorted(set(r.name for r in replicas) - set(seen))
            failures.append(f"transition {index + 1} (generation {generation}): "
                            f"{', '.join(missing)} did not route {target} within {args.timeout} s")
            break
        last = max(seen.values())
        samples.append({
            "generation": generation, "weight": target, "sent_ms": sent, "answered_ms": answered,
            "committed_ms": committed, "seen_ms": seen,
            "lag_from_commit_ms": last - committed, "lag_from_answer_ms": last - answered,
            "per_replica_from_commit_ms": {name: t - committed for name, t in seen.items()},
        })
        current = {"weight": target, "generation": generation}
    # The journal must hold every generation once, in order (the compare-and-set's promise).
    status, history = driver.request("GET", f"/admin/v1/migrations/{args.migration}/history?limit=10000")
    generations = [t["generation"] for t in history.get("transitions", [])] if status == 200 else []
    journal_ok = bool(generations) and generations == list(range(generations[0], generations[0] + len(generations)))
    result = {"samples": samples, "conflicts": conflicts, "failures": failures,
              "journal_generations": [generations[0], generations[-1]] if generations else [],
              "journal_consecutive": journal_ok, "driver": driver.name,
              "poll_ms": args.poll_ms}
    with open(args.out, "w", encoding="utf-8") as out:
        json.dump(result, out)
    lags = [s["lag_from_commit_ms"] for s in samples]
    print(f"propagation: {len(samples)} transitions, p50 {percentile(lags, 0.5):.1f} ms, "
          f"p99 {percentile(lags, 0.99):.1f} ms, max {max(lags, default=float('nan')):.1f} ms "
          f"from the commit; {conflicts} conflicts; journal consecutive: {journal_ok}", file=sys.stderr)
    return 1 if failures or not journal_ok else 0


# ---------------------------------------------------------------------------------------------
def failover(args):
    replicas = replicas_from(args)
    poll = args.poll_ms / 1000.0
    states = {r.name: r.status(args.migration) for r in replicas}
    leaders = [name for name, s in states.items() if s["store"]["leading"]]
    if len(leaders) != 1:
        sys.exit(f"fleet_probe: expected one leader, found {leaders or 'none'}")
    leader = next(r for r in replicas if r.name == leaders[0])
    if leader.pid is None:
        sys.exit(f"fleet_probe: no pid for {leader.name}")
    old_term = states[leader.name]["store"]["leader"]
    password = os.environ.get(args.redis_password_env, "") if args.redis_password_env else ""
    pttl_reply = redis_command(args.redis_port, "PTTL", "{" + args.key_prefix + "}:leader", password=password)
    killed = now_ms()
    os.kill(leader.pid, signal.SIGKILL)
    leader.close()
    survivors = [r for r in replicas if r is not leader]
    pttl = int(pttl_reply[1:]) if pttl_reply.startswith(b":") else None
    new_leader = None
    observed = None
    deadline = time.monotonic() + args.timeout
    while new_leader is None and time.monotonic() < deadline:
        tick = time.monotonic()
        for replica in survivors:
            state = replica.status(args.migration)
            if state["store"]["leading"]:
                new_leader, observed = replica, now_ms()
                break
        rest = poll - (time.monotonic() - tick)
        if rest > 0 and new_leader is None:
            time.sleep(rest)
    if new_leader is None:
        sys.exit(f"fleet_probe: no replica took over within {args.timeout} s of killing {leader.name}")
    # When it took the lease, by its own log ("fleet: this replica (rN) leads with term T").
    taken = log_time_ms(new_leader.log, r"fleet: this replica .* leads with term") if new_leader.log else None
    since = taken if taken is not None else observed - args.poll_ms
    evaluated = None
    term = None
    while evaluated is None and time.monotonic() < deadline:
        tick = time.monotonic()
        state = new_leader.status(args.migration)
        term = state["store"]["leader"]
        at = state.get("evaluation", {}).get("at_unix_ms") or 0
        if state["store"]["leading"] and at > since:
            evaluated = float(at)
            break
        rest = poll - (time.monotonic() - tick)
        if rest > 0:
            time.sleep(rest)
    if evaluated is None:
        sys.exit(f"fleet_probe: {new_leader.name} leads but did not evaluate within {args.timeout} s")
    result = {
        "killed": leader.name, "old_leader": old_term, "new_leader": term,
        "lease_left_at_kill_ms": pttl,
        "to_leading_observed_ms": observed - killed,
        "to_lease_taken_ms": (taken - killed) if taken is not None else None,
        "to_first_evaluation_ms": evaluated - killed,
    }
    with open(args.out, "w", encoding="utf-8") as out:
        json.dump(result, out)
    print(f"failover: killed {leader.name} ({old_term}) with {pttl} ms of lease left; "
          f"{new_leader.name} leads ({term}) {result['to_leading_observed_ms']:.0f} ms later "
          f"(lease taken at +{result['to_lease_taken_ms'] or float('nan'):.0f} ms by its log), "
          f"first evaluation at +{result['to_first_evaluation_ms']:.0f} ms", file=sys.stderr)
    return 0


# ---------------------------------------------------------------------------------------------
def converged(args):
    replicas = replicas_from(args)
    deadline = time.monotonic() + args.timeout
    last_problem = "no answer yet"
    while time.monotonic() < deadline:
        try:
            states = {r.name: r.status(args.migration) for r in replicas}
        except (OSError, http.client.HTTPException, RuntimeError, ValueError) as error:
            last_problem = str(error)
            time.sleep(0.05)
            continue
        views = {(s["phase"], s["generation"], s["routed_weight"]) for s in states.values()}
        leading = [name for name, s in states.items() if s["store"]["leading"]]
        up = all(s["store"]["up"] for s in states.values())
        if len(views) == 1 and len(leading) == 1 and up:
            for name, s in states.items():
                print(f"{name} {s['phase']} {s['weight']} {s['routed_weight']} {s['generation']} "
                      f"{s['store']['leading']} {s['store']['leader']}")
            return 0
        last_problem = (f"views {sorted(views)}, leading {leading}, store up {up}")
        time.sleep(0.05)
    print(f"fleet_probe: the replicas did not agree within {args.timeout} s: {last_problem}", file=sys.stderr)
    return 1


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["propagation", "failover", "converged"])
    parser.add_argument("--replica", action="append", required=True, help="NAME=ADMIN_PORT[:PID[:LOG]]")
    parser.add_argument("--token-env", default="CUTOVER_FLEET_ADMIN_TOKEN")
    parser.add_argument("--migration", required=True)
    parser.add_argument("--out", default=os.devnull)
    parser.add_argument("--poll-ms", type=float, default=5.0)
    parser.add_argument("--timeout", type=float, default=5.0, help="seconds per transition / round")
    # propagation
    parser.add_argument("--drive", help="the replica whose admin API commits the transitions")
    parser.add_argument("--count", type=int, default=100)
    parser.add_argument("--weights", default="0.2,0.3")
    parser.add_argument("--interval-ms", type=float, default=100.0, help="the evaluation interval")
    parser.add_argument("--budget", type=float, default=300.0, help="seconds for all transitions")
    parser.add_argument("--seed", type=int, default=12)
    # failover
    parser.add_argument("--redis-port", type=int)
    parser.add_argument("--redis-password-env", default="")
    parser.add_argument("--key-prefix", default="cutover")
    args = parser.parse_args()
    return {"propagation": propagation, "failover": failover, "converged": converged}[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
