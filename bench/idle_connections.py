#!/usr/bin/env python3
"""Opens many idle keep-alive client connections to a local server, holds them, then closes them.

Used by bench/run.sh to measure cutover's resident memory with 2,000 idle clients. Each socket
connects to 127.0.0.1:PORT and, unless --request none, sends one request and reads the full
response first, so that every connection sits in the server's keep-alive wait (with whatever
per-connection buffers a served request leaves behind) rather than in "accepted, nothing read yet".

Prints "READY open=N ok=M failed=F" once all connections are open and answered, holds them for
--hold seconds (or until --release-file exists, if that comes first), checks how many the server
still keeps open, prints "CLOSED still_open=K" and exits.
Only loopback is allowed.
"""

import argparse
import json
import os
import resource
import select
import socket
import sys
import time

CHAT_BODY = json.dumps(
    {"model": "gpt-4", "messages": [{"role": "user", "content": "hello"}]},
    separators=(",", ":"),
).encode()


def raise_fd_limit(needed: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= needed:
        return
    target = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
    resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    if target < needed:
        sys.exit(f"idle_connections: need {needed} file descriptors, hard limit is {hard}")


def build_request(kind: str, port: int, key: str) -> bytes:
    host = f"127.0.0.1:{port}"
    if kind == "healthz":
        return f"GET /healthz HTTP/1.1\r\nHost: {host}\r\n\r\n".encode()
    return (
        f"POST /v1/chat/completions HTTP/1.1\r\nHost: {host}\r\n"
        f"Authorization: Bearer {key}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(CHAT_BODY)}\r\n\r\n"
    ).encode() + CHAT_BODY


def read_response(sock: socket.socket, deadline: float) -> int:
    """Reads one HTTP/1.1 response (Content-Length or chunked); returns its status code."""
    data = b""
    while b"\r\n\r\n" not in data:
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed before the response headers")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    if "content-length" in headers:
        remaining = int(headers["content-length"]) - len(body)
        while remaining > 0:
            sock.settimeout(max(0.01, deadline - time.monotonic()))
            chunk = sock.recv(min(65536, remaining))
            if not chunk:
                raise ConnectionError("closed inside the response body")
            remaining -= len(chunk)
    elif "chunked" in headers.get("transfer-encoding", "").lower():
        while not body.endswith(b"0\r\n\r\n"):
            sock.settimeout(max(0.01, deadline - time.monotonic()))
            chunk = sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed inside the chunked body")
            body += chunk
    return status


def still_open(sock: socket.socket) -> bool:
    sock.setblocking(False)  # a socket with a timeout would wait for data before peeking
    try:
        return sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) != b""
    except BlockingIOError:
        return True  # nothing to read and not closed: open and idle
    except OSError:
        return False


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--count", type=int, default=2000)
    parser.add_argument("--hold", type=float, default=8.0, help="seconds to hold them open")
    parser.add_argument("--release-file", help="stop holding as soon as this file exists")
    parser.add_argument("--request", choices=["chat", "healthz", "none"], default="chat")
    parser.add_argument("--key", default=os.environ.get("CUTOVER_CLIENT_KEY", "bench"))
    parser.add_argument("--timeout", type=float, default=30.0, help="limit for opening them all")
    args = parser.parse_args()

    raise_fd_limit(args.count + 64)
    deadline = time.monotonic() + args.timeout
    sockets = []
    try:
        for _ in range(args.count):
            sock = socket.create_connection(("127.0.0.1", args.port), timeout=args.timeout)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sockets.append(sock)
        ok = failed = 0
        if args.request != "none":
            request = build_request(args.request, args.port, args.key)
            # Send in batches and read back, so a few hundred requests are in flight at a time.
            batch = 200
            for start in range(0, len(sockets), batch):
                group = sockets[start:start + batch]
                for sock in group:
                    sock.sendall(request)
                for sock in group:
                    try:
                        status = read_response(sock, deadline)
                        ok += 200 <= status < 300
                        failed += not (200 <= status < 300)
                    except (OSError, ValueError, IndexError):
                        failed += 1
        print(f"READY open={len(sockets)} ok={ok} failed={failed}", flush=True)

        end = time.monotonic() + args.hold
        while time.monotonic() < end:
            if args.release_file and os.path.exists(args.release_file):
                break
            select.select([], [], [], min(0.1 if args.release_file else 0.5,
                                          max(0.0, end - time.monotonic())))
        alive = sum(still_open(sock) for sock in sockets)
    finally:
        for sock in sockets:
            sock.close()
    print(f"CLOSED still_open={alive}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
