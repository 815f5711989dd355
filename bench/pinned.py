#!/usr/bin/env python3
"""Fixed upstream answers for bench/pinned.sh (issue #14), and the nginx locations that serve them.

  pinned.py upstream --dir DIR
      Writes DIR/openai.json (a 577-byte OpenAI chat.completion with usage), DIR/openai.sse
      (13 `data:` events: the role chunk, 9 content chunks, the finish chunk, the usage chunk and
      `data: [DONE]`), DIR/anthropic.json (a Messages answer with usage) and DIR/anthropic.sse
      (13 Messages events, message_start ... message_stop), and DIR/locations.conf: nginx
      `location` blocks for /v1/chat/completions and /v1/messages that `return 200` the plain
      answer, or the SSE one (content-type text/event-stream) when the request's Accept header
      asks for text/event-stream. cutover sends `Accept: text/event-stream` upstream exactly for
      streamed requests, so one route and one provider serve both modes and the proxied
      requests differ only in "stream":true (and what the gateway adds for it).

nginx reads a quoted parameter of at most 4 KiB, so each answer is cut into pieces kept in
variables (`set`) and returned as their concatenation. No answer contains `$`, which nginx would
take for a variable.
"""

import argparse
import json
import os
import sys

CREATED = 1767225600
OPENAI_MODEL = "gpt-4.1-2025-04-14"
ANTHROPIC_MODEL = "claude-sonnet-4-5-20250929"
PLAIN_BYTES = 577  # the size issue #14 names for the plain answer
WORDS = ["Hello", "!", " How", " can", " I", " help", " you", " today", "?"]


def compact(value) -> str:
    return json.dumps(value, separators=(",", ":"))


def openai_plain() -> bytes:
    def build(content: str) -> str:
        return compact({
            "id": "chatcmpl-Cb14pinned001",
            "object": "chat.completion",
            "created": CREATED,
            "model": OPENAI_MODEL,
            "choices": [{
                "index": 0,
                "message": {"role": "assistant", "content": content, "refusal": None,
                            "annotations": []},
                "logprobs": None,
                "finish_reason": "stop",
            }],
            "usage": {
                "prompt_tokens": 19, "completion_tokens": 10, "total_tokens": 29,
                "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
                "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0,
                                              "accepted_prediction_tokens": 0,
                                              "rejected_prediction_tokens": 0},
            },
            "system_fingerprint": "fp_b3f1157249",
        })

    text = build("".join(WORDS))
    if len(text.encode()) != PLAIN_BYTES:
        sys.exit(f"pinned.py: the plain answer is {len(text.encode())} bytes, not {PLAIN_BYTES}")
    return text.encode()


def openai_sse() -> bytes:
    def chunk(delta, finish=None, usage=None, choices=True) -> str:
        body = {
            "id": "chatcmpl-CbenchPinned14reference0002",
            "object": "chat.completion.chunk",
            "created": CREATED,
            "model": OPENAI_MODEL,
            "service_tier": "default",
            "system_fingerprint": "fp_b3f1157249",
            "choices": [{"index": 0, "delta": delta, "logprobs": None,
                         "finish_reason": finish}] if choices else [],
        }
        if usage is not None:
            body["usage"] = usage
        else:
            body["usage"] = None
        return "data: " + compact(body) + "\n\n"

    events = [chunk({"role": "assistant", "content": "", "refusal": None})]
    events += [chunk({"content": word}) for word in WORDS]
    events.append(chunk({}, finish="stop"))
    events.append(chunk(None, usage={
        "prompt_tokens": 19, "completion_tokens": 10, "total_tokens": 29,
        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0,
                                      "accepted_prediction_tokens": 0,
                                      "rejected_prediction_tokens": 0},
    }, choices=False))
    events.append("data: [DONE]\n\n")
    assert len(events) == 13
    return "".join(events).encode()


def anthropic_plain() -> bytes:
    return compact({
        "id": "msg_01BenchPinned14Reference0001",
        "type": "message",
        "role": "assistant",
        "model": ANTHROPIC_MODEL,
        "content": [{"type": "text", "text": "".join(WORDS)}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": {"input_tokens": 19, "cache_creation_input_tokens": 0,
                  "cache_read_input_tokens": 0, "output_tokens": 10,
                  "service_tier": "standard"},
    }).encode()


def anthropic_sse() -> bytes:
    def event(name: str, data) -> str:
        return f"event: {name}\ndata: {compact(data)}\n\n"

    events = [
        event("message_start", {"type": "message_start", "message": {
            "id": "msg_01BenchPinned14Reference0002", "type": "message", "role": "assistant",
            "model": ANTHROPIC_MODEL, "content": [], "stop_reason": None, "stop_sequence": None,
            "usage": {"input_tokens": 19, "cache_creation_input_tokens": 0,
                      "cache_read_input_tokens": 0, "output_tokens": 1,
                      "service_tier": "standard"}}}),
        event("content_block_start", {"type": "content_block_start", "index": 0,
                                      "content_block": {"type": "text", "text": ""}}),
        event("ping", {"type": "ping"}),
    ]
    # Seven deltas, so that the whole stream is 13 events like the OpenAI one.
    deltas = ["Hello!", " How", " can", " I", " help", " you", " today?"]
    events += [event("content_block_delta", {"type": "content_block_delta", "index": 0,
                                             "delta": {"type": "text_delta", "text": text}})
               for text in deltas]
    events.append(event("content_block_stop", {"type": "content_block_stop", "index": 0}))
    events.append(event("message_delta", {"type": "message_delta",
                                          "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                                          "usage": {"output_tokens": 10}}))
    events.append(event("message_stop", {"type": "message_stop"}))
    assert len(events) == 13
    return "".join(events).encode()


def nginx_quote(text: str) -> str:
    """TEXT as an nginx single-quoted parameter (backslash escapes, \\n for newlines)."""
    if "$" in text:
        sys.exit("pinned.py: an answer contains '$'")
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'").replace("\n", "\\n") + "'"


def nginx_return(name: str, body: bytes, content_type: str) -> str:
    text = body.decode()
    pieces = [text[i:i + 1500] for i in range(0, len(text), 1500)]
    lines = [f"    default_type {content_type};"]
    for n, piece in enumerate(pieces):
        lines.append(f"    set ${name}_{n} {nginx_quote(piece)};")
    lines.append("    return 200 \"" + "".join(f"${name}_{n}" for n in range(len(pieces))) + "\";")
    return "\n".join(lines)


def cmd_upstream(args) -> int:
    os.makedirs(args.dir, exist_ok=True)
    answers = {
        "openai.json": openai_plain(),
        "openai.sse": openai_sse(),
        "anthropic.json": anthropic_plain(),
        "anthropic.sse": anthropic_sse(),
    }
    for name, body in answers.items():
        with open(os.path.join(args.dir, name), "wb") as out:
            out.write(body)
    conf = f"""# Written by bench/pinned.py: fixed answers, chosen by the Accept header.
map $http_accept $bench_wants_sse {{
  default 0;
  "~*text/event-stream" 1;
}}
server {{
  listen 127.0.0.1:{args.port} backlog=4096;
  keepalive_requests 100000000;
  keepalive_timeout 300s;
  location = /v1/chat/completions {{
    if ($bench_wants_sse) {{ rewrite ^ /_bench/openai-sse last; }}
{nginx_return("openai_json", answers["openai.json"], "application/json")}
  }}
  location = /_bench/openai-sse {{
    internal;
{nginx_return("openai_sse", answers["openai.sse"], "text/event-stream")}
  }}
  location = /v1/messages {{
    if ($bench_wants_sse) {{ rewrite ^ /_bench/anthropic-sse last; }}
{nginx_return("anthropic_json", answers["anthropic.json"], "application/json")}
  }}
  location = /_bench/anthropic-sse {{
    internal;
{nginx_return("anthropic_sse", answers["anthropic.sse"], "text/event-stream")}
  }}
  location / {{
    return 404;
  }}
}}
"""
    with open(os.path.join(args.dir, "locations.conf"), "w") as out:
        out.write(conf)
    sizes = " ".join(f"{name}={len(body)}" for name, body in answers.items())
    print(f"ANSWERS {sizes}")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    upstream = sub.add_parser("upstream")
    upstream.add_argument("--dir", required=True)
    upstream.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    return cmd_upstream(args)


if __name__ == "__main__":
    sys.exit(main())
