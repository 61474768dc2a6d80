"""A local OpenAI-compatible server on 127.0.0.1 that fails on script: 500, 429, a dropped
connection, a stall, a stream cut off midway ("cut"). Between failures it answers like a tiny
model, streamed as server-sent events when asked (``stream: true``), word by word."""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class FaultServer:
    def __init__(self) -> None:
        self.script: deque[str] = deque()  # "500", "429", "drop", "stall"; empty -> ok
        self.default = "ok"
        self.requests = 0
        self.stall_s = 5.0
        self.chat = None  # body -> assistant message (content, tool_calls) for the chat endpoint
        self.chats: list[dict] = []  # the chat requests received
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
                if self.path.endswith("/extras/tokenize"):
                    return self._json(200, {"tokens": list(range(len(body["input"].split())))})
                if self.path.endswith("/chat/completions"):
                    server.requests += 1
                    server.chats.append(body)
                    msg = server.chat(body) if server.chat else {"role": "assistant", "content": "We add the numbers.\nAnswer: 42"}
                    if body.get("stream"):
                        cut = bool(server.script) and server.script[0] == "cut" and bool(server.script.popleft())
                        deltas = [{"reasoning_content": w} for w in _words(msg.get("reasoning_content", ""))]
                        deltas += [{"content": w} for w in _words(msg.get("content") or "")]
                        return self._sse("chat.completion.chunk", [{"index": 0, "delta": d, "finish_reason": None} for d in deltas],
                                         {"index": 0, "delta": {}, "finish_reason": "stop"}, body, cut, 5)
                    return self._json(200, {
                        "id": "chat-1", "object": "chat.completion", "created": 0, "model": body.get("model", "m"),
                        "choices": [{"index": 0, "message": msg, "finish_reason": "tool_calls" if msg.get("tool_calls") else "stop"}],
                        "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15},
                    })
                if not self.path.endswith("/completions"):
                    return self._json(404, {"detail": "Not Found"})
                server.requests += 1
                action = server.script.popleft() if server.script else server.default
                if action == "drop":
                    self.connection.close()
                    return
                if action == "stall":
                    time.sleep(server.stall_s)
                    return
                if action in ("500", "429"):
                    headers = {"Retry-After": "0"} if action == "429" else {}
                    return self._json(int(action), {"error": {"message": f"scripted {action}", "type": "server_error"}}, headers)
                prompt = body.get("prompt", "")
                text = " 42" if prompt.rstrip().endswith("Answer:") else "We add the numbers.\nWe are done.\nAnswer: 42"
                n = len(text.split())
                if body.get("stream"):
                    return self._sse("text_completion", [{"index": 0, "text": w, "finish_reason": None} for w in _words(text)],
                                     {"index": 0, "text": "", "finish_reason": "stop"}, body, False, n)
                return self._json(200, {
                    "id": "cmpl-1", "object": "text_completion", "created": 0, "model": body.get("model", "m"),
                    "choices": [{"text": text, "index": 0, "logprobs": None, "finish_reason": "stop"}],
                    "usage": {"prompt_tokens": len(prompt.split()), "completion_tokens": n, "total_tokens": n},
                })

            def _sse(self, kind, choices, last, body, cut, n_tokens):
                """Chunks of one reply as server-sent events; `cut`: the connection closes halfway."""
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.end_headers()
                events = [{"id": "s-1", "object": kind, "created": 0, "model": body.get("model", "m"), "choices": [c]} for c in [*choices, last]]
                if (body.get("stream_options") or {}).get("include_usage"):
                    events.append({"id": "s-1", "object": kind, "created": 0, "model": body.get("model", "m"), "choices": [],
                                   "usage": {"prompt_tokens": 10, "completion_tokens": n_tokens, "total_tokens": 10 + n_tokens}})
                for i, event in enumerate(events):
                    if cut and i == len(events) // 2:
                        self.wfile.flush()
                        self.connection.shutdown(2)
                        return
                    self.wfile.write(f"data: {json.dumps(event)}\n\n".encode())
                    self.wfile.flush()
                self.wfile.write(b"data: [DONE]\n\n")

            def _json(self, code, obj, headers=None):
                data = json.dumps(obj).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> "FaultServer":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def _words(text: str) -> list[str]:
    """`text` in pieces that join back to it: each word with the space or newline before it."""
    import re

    return re.findall(r"\s*\S+", text) + ([m] if (m := re.search(r"\s+$", text)) and (m := m.group(0)) else [])
