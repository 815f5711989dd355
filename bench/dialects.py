#!/usr/bin/env python3
"""Helpers for bench/dialects.sh: a format check of one client/provider path, and streaming TTFB.

  dialects.py check --port P --url /v1/messages --kind messages --auth x-api-key \
      --provider ant --model M --body JSON [--stream]
      One request; exits 1 (saying why) unless it is a 200 in the client protocol's format
      (chat: chat.completion / chat.completion.chunk events ending in [DONE]; messages: a Message /
      message_start ... message_stop events; responses: a Response / response.created ...
      response.completed events), answered by PROVIDER (x-cutover-provider) under the model
      the client asked for. Without --provider the check is of a simulator directly.

  dialects.py ttfb --count 200 --target NAME PORT URL AUTH BODY [--target ...]
      bench/ttfb.py's measurement (one keep-alive connection per target, sequential requests
      alternating between the targets, time from writing the request to the first body byte)
      for any body and path; prints bench/ttfb.py's TTFB lines.

Only loopback (127.0.0.1) is used. The client key is CUTOVER_CLIENT_KEY.
"""

import argparse
import http.client
import json
import os
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ttfb  # noqa: E402  (bench/ttfb.py: Target, percentile)

KEY = os.environ.get("CUTOVER_CLIENT_KEY", "bench")


def headers_for(auth: str) -> dict:
    headers = {"Content-Type": "application/json"}
    if auth == "x-api-key":
        headers["x-api-key"] = KEY
        headers["anthropic-version"] = "2023-06-01"
    else:
        headers["Authorization"] = f"Bearer {KEY}"
    return headers


def sse_events(text: str) -> list[tuple[str, str]]:
    """(event name or "", data) for each SSE event."""
    events = []
    for block in text.replace("\r\n", "\n").split("\n\n"):
        name, data = "", []
        for line in block.split("\n"):
            if line.startswith("event:"):
                name = line[6:].strip()
            elif line.startswith("data:"):
                data.append(line[5:].lstrip())
        if name or data:
            events.append((name, "\n".join(data)))
    return events


def check_format(kind: str, stream: bool, content_type: str, text: str, model: str | None) -> str | None:
    """None if TEXT is KIND's answer format, else what is wrong."""
    if stream:
        if "text/event-stream" not in content_type:
            return f"content-type {content_type!r}, expected text/event-stream"
        events = sse_events(text)
        if not events:
            return "no SSE events"
        names = [name for name, _ in events]
        if kind == "chat":
            if events[-1][1] != "[DONE]":
                return "the stream does not end with data: [DONE]"
            chunks = [json.loads(data) for _, data in events[:-1]]
            if not chunks or any(c.get("object") != "chat.completion.chunk" for c in chunks):
                return "not every event is a chat.completion.chunk"
            if not any(c.get("choices") and c["choices"][0].get("finish_reason") for c in chunks):
                return "no chunk has a finish_reason"
            first = chunks[0]
        elif kind == "messages":
            if names[0] != "message_start" or names[-1] != "message_stop":
                return f"events {names[0]} ... {names[-1]}, expected message_start ... message_stop"
            if "content_block_delta" not in names:
                return "no content_block_delta event"
            first = json.loads(events[0][1])["message"]
        else:
            if names[0] != "response.created" or names[-1] != "response.completed":
                return f"events {names[0]} ... {names[-1]}, expected response.created ... response.completed"
            if "response.output_text.delta" not in names:
                return "no response.output_text.delta event"
            first = json.loads(events[0][1])["response"]
    else:
        if "application/json" not in content_type:
            return f"content-type {content_type!r}, expected application/json"
        first = body = json.loads(text)
        if kind == "chat":
            if body.get("object") != "chat.completion" or not body["choices"][0]["message"].get("content"):
                return "not a chat.completion with content"
        elif kind == "messages":
            if body.get("type") != "message" or body["content"][0].get("type") != "text":
                return "not a Message with a text block"
        elif body.get("object") != "response" or body.get("status") != "completed" or not body.get("output"):
            return "not a completed Response with output"
    if model is not None and first.get("model") != model:
        return f"model {first.get('model')!r}, expected {model!r} (the client's name)"
    return None


def cmd_check(args) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", args.port, timeout=10)
    conn.request("POST", args.url, body=args.body.encode(), headers=headers_for(args.auth))
    response = conn.getresponse()
    text = response.read().decode("utf-8", "replace")
    what = f"{args.url} {args.body}"
    if response.status != 200:
        print(f"check: {what}: status {response.status}: {text[:500]}", file=sys.stderr)
        return 1
    if args.provider is not None and response.getheader("x-cutover-provider") != args.provider:
        print(f"check: {what}: answered by {response.getheader('x-cutover-provider')!r}, "
              f"expected {args.provider!r}", file=sys.stderr)
        return 1
    try:
        problem = check_format(args.kind, args.stream, response.getheader("content-type") or "", text,
                               args.model if args.provider is not None else None)
    except (ValueError, KeyError, IndexError, TypeError, AttributeError) as error:
        problem = f"unreadable: {error!r}"
    if problem:
        print(f"check: {what}: {problem}; the answer:\n{text[:1500]}", file=sys.stderr)
        return 1
    return 0


class Target(ttfb.Target):
    def __init__(self, name: str, port: int, url: str, auth: str, body: str):
        super().__init__(name, port, KEY)
        head = "".join(f"{k}: {v}\r\n" for k, v in headers_for(auth).items())
        data = body.encode()
        self.request = (
            f"POST {url} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n{head}"
            f"Accept: text/event-stream\r\nContent-Length: {len(data)}\r\n\r\n"
        ).encode() + data


def cmd_ttfb(args) -> int:
    targets = [Target(name, int(port), url, auth, body) for name, port, url, auth, body in args.target]
    for i in range(args.warmup + args.count):
        for target in targets:
            target.one(record=i >= args.warmup)
    for target in targets:
        h, b = target.header_us, target.body_us
        print(
            f"TTFB name={target.name} n={len(b)} "
            f"header_p50_us={statistics.median(h):.0f} header_p99_us={ttfb.percentile(h, 99):.0f} "
            f"body_p50_us={statistics.median(b):.0f} body_p90_us={ttfb.percentile(b, 90):.0f} "
            f"body_p99_us={ttfb.percentile(b, 99):.0f} body_mean_us={statistics.fmean(b):.0f}",
            flush=True,
        )
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    check = sub.add_parser("check")
    check.add_argument("--port", type=int, required=True)
    check.add_argument("--url", required=True)
    check.add_argument("--kind", choices=["chat", "messages", "responses"], required=True)
    check.add_argument("--auth", choices=["bearer", "x-api-key"], required=True)
    check.add_argument("--provider")
    check.add_argument("--model", required=True)
    check.add_argument("--body", required=True)
    check.add_argument("--stream", action="store_true")
    timing = sub.add_parser("ttfb")
    timing.add_argument("--target", nargs=5, action="append", required=True,
                        metavar=("NAME", "PORT", "URL", "AUTH", "BODY"))
    timing.add_argument("--count", type=int, default=200)
    timing.add_argument("--warmup", type=int, default=20)
    args = parser.parse_args()
    return cmd_check(args) if args.command == "check" else cmd_ttfb(args)


if __name__ == "__main__":
    sys.exit(main())
