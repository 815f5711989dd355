#!/usr/bin/env python3
"""Time to first byte of streaming chat completions, for several local targets side by side.

Used by bench/run.sh: e.g. `ttfb.py --target direct=19001 --target cutover=18080 --count 200`.
Each target gets one keep-alive connection; requests are sequential and alternate between the
targets (direct, cutover, direct, ...) so both see the same background load. For every request it
records, from just before the request is written:

  header  time to the first byte of the response (the status line)
  body    time to the first byte of the response body (the first SSE event's chunk)

and prints one line per target:
  TTFB name=NAME n=N header_p50_us=.. header_p99_us=.. body_p50_us=.. body_p90_us=.. body_p99_us=..
Only loopback is allowed. Exits non-zero if a response is not a 200 text/event-stream.
"""

import argparse
import json
import os
import socket
import statistics
import sys
import time

BODY = json.dumps(
    {"model": "gpt-4", "stream": True, "messages": [{"role": "user", "content": "hello"}]},
    separators=(",", ":"),
).encode()


class Target:
    def __init__(self, name: str, port: int, key: str):
        self.name, self.port = name, port
        self.request = (
            f"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            f"Authorization: Bearer {key}\r\nContent-Type: application/json\r\n"
            f"Accept: text/event-stream\r\nContent-Length: {len(BODY)}\r\n\r\n"
        ).encode() + BODY
        self.sock = None
        self.header_us: list[float] = []
        self.body_us: list[float] = []

    def connect(self) -> None:
        if self.sock is not None:
            self.sock.close()
        self.sock = socket.create_connection(("127.0.0.1", self.port), timeout=10)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def one(self, record: bool) -> None:
        if self.sock is None:
            self.connect()
        sock = self.sock
        start = time.perf_counter_ns()
        sock.sendall(self.request)
        data = b""
        first_byte = first_body = None
        header_end = -1
        while True:
            chunk = sock.recv(65536)
            now = time.perf_counter_ns()
            if not chunk:
                raise ConnectionError(f"{self.name}: connection closed mid-response")
            if first_byte is None:
                first_byte = now
            data += chunk
            if header_end < 0:
                header_end = data.find(b"\r\n\r\n")
                if header_end >= 0:
                    head = data[:header_end].decode("latin-1").lower()
                    status = head.split("\r\n", 1)[0]
                    if " 200 " not in status + " " or "text/event-stream" not in head:
                        raise RuntimeError(f"{self.name}: unexpected response: {head[:300]!r}")
                    if "transfer-encoding: chunked" not in head:
                        raise RuntimeError(f"{self.name}: expected a chunked SSE response")
            if header_end >= 0 and first_body is None:
                body = data[header_end + 4:]
                line_end = body.find(b"\r\n")
                # The first chunk's size line is complete and at least one payload byte is here.
                if line_end >= 0 and len(body) > line_end + 2:
                    first_body = now
            if first_body is not None and data.endswith(b"\r\n0\r\n\r\n"):
                break
        if b"connection: close" in data[:header_end].lower():
            self.sock.close()
            self.sock = None
        if record:
            self.header_us.append((first_byte - start) / 1000)
            self.body_us.append((first_body - start) / 1000)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", action="append", required=True, help="NAME=PORT (127.0.0.1)")
    parser.add_argument("--count", type=int, default=200, help="measured requests per target")
    parser.add_argument("--warmup", type=int, default=20, help="unmeasured requests per target")
    parser.add_argument("--key", default=os.environ.get("CUTOVER_CLIENT_KEY", "bench"))
    args = parser.parse_args()

    targets = []
    for spec in args.target:
        name, _, port = spec.partition("=")
        targets.append(Target(name, int(port), args.key))
    for i in range(args.warmup + args.count):
        for target in targets:
            target.one(record=i >= args.warmup)
    for target in targets:
        h, b = target.header_us, target.body_us
        print(
            f"TTFB name={target.name} n={len(b)} "
            f"header_p50_us={statistics.median(h):.0f} header_p99_us={percentile(h, 99):.0f} "
            f"body_p50_us={statistics.median(b):.0f} body_p90_us={percentile(b, 90):.0f} "
            f"body_p99_us={percentile(b, 99):.0f} body_mean_us={statistics.fmean(b):.0f}",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
