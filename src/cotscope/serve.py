"""Serve a system as an OpenAI-compatible chat-completions endpoint (FastAPI + uvicorn).

The answer is the message's ``content``; the system's reasoning (for shoggoth-face, the
paraphrased CoT the face saw) is in ``reasoning_content``, the field vLLM and DeepSeek use.
With ``stream: true`` the reasoning comes step by step, then the answer, as server-sent
events. Bad requests get OpenAI-style error bodies with the matching status codes.

The system runs to completion before the first chunk is sent: streaming orders the output,
it does not shorten the time to the first token.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from typing import Any

from pydantic import BaseModel, ConfigDict

from ._errors import CotscopeError, require
from .backends import GenerationParams, get_backend
from .systems import System, get_system
from .tasks import Sample
from .tasks.base import Kind


class Message(BaseModel):
    model_config = ConfigDict(extra="allow")
    role: str
    content: str | list[dict[str, Any]] | None = None


class ChatRequest(BaseModel):
    """The part of OpenAI's chat-completions request that cotscope reads; the rest is accepted."""

    model_config = ConfigDict(extra="allow")
    model: str
    messages: list[Message]
    stream: bool = False
    max_tokens: int | None = None
    max_completion_tokens: int | None = None


def _error(status: int, message: str, param: str | None = None, code: str | None = None, kind: str = "invalid_request_error"):
    from fastapi.responses import JSONResponse

    return JSONResponse(status_code=status, content={"error": {"message": message, "type": kind, "param": param, "code": code}})


def create_app(system: System, *, max_prompt_chars: int = 8000, max_tokens_limit: int = 1024):
    """The FastAPI app serving `system` under the model id ``system.spec``."""
    fastapi = require("fastapi", "serve")
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import StreamingResponse

    app = fastapi.FastAPI(title=f"cotscope · {system.spec}")
    lock = threading.Lock()  # one generation at a time: backends are not thread-safe

    @app.exception_handler(RequestValidationError)
    async def _bad_request(request, exc: RequestValidationError):
        err = exc.errors()[0]
        param = ".".join(str(p) for p in err["loc"][1:]) or None
        return _error(400, f"invalid request: {param}: {err['msg']}", param=param)

    @app.get("/v1/models")
    def models():
        return {"object": "list", "data": [{"id": system.spec, "object": "model", "created": 0, "owned_by": "cotscope"}]}

    @app.post("/v1/chat/completions")
    def chat(req: ChatRequest):
        if req.model != system.spec:
            return _error(404, f"The model '{req.model}' does not exist; this server has '{system.spec}'", "model", "model_not_found")
        users = [m for m in req.messages if m.role == "user"]
        if not users:
            return _error(400, "messages must contain a user message", "messages")
        question = _text(users[-1].content)
        if not question.strip():
            return _error(400, "the last user message is empty", "messages")
        if len(question) > max_prompt_chars:
            return _error(400, f"the prompt has {len(question)} characters; this server accepts at most {max_prompt_chars}",
                          "messages", "context_length_exceeded")
        budget = req.max_completion_tokens or req.max_tokens
        if budget is not None and not 1 <= budget <= max_tokens_limit:
            return _error(400, f"max_tokens must be between 1 and {max_tokens_limit}; got {budget}", "max_tokens")
        try:
            with lock:
                default = system.params
                if budget is not None:
                    system.params = GenerationParams(**{**default.__dict__, "max_new_tokens": budget})
                try:
                    trace = system.run([Sample(id=uuid.uuid4().hex, question=question, answer="")])[0]
                finally:
                    system.params = default
        except CotscopeError as exc:
            return _error(502, str(exc), kind="server_error")
        content = trace.final_text.removeprefix("Answer:").strip()
        reasoning = trace.cot_text
        rid, created = f"chatcmpl-{uuid.uuid4().hex[:24]}", int(time.time())
        usage = {"prompt_tokens": trace.n_prompt_tokens, "completion_tokens": trace.n_generated_tokens,
                 "total_tokens": trace.n_prompt_tokens + trace.n_generated_tokens}
        if not req.stream:
            return {
                "id": rid, "object": "chat.completion", "created": created, "model": system.spec,
                "choices": [{"index": 0, "finish_reason": "stop",
                             "message": {"role": "assistant", "content": content, "reasoning_content": reasoning}}],
                "usage": usage,
                "cotscope": {"answer": trace.answer, "roles": trace.roles, "tokens_by_role": trace.tokens_by_role},
            }

        def events():
            def chunk(delta: dict, finish: str | None = None) -> str:
                body = {"id": rid, "object": "chat.completion.chunk", "created": created, "model": system.spec,
                        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
                return f"data: {json.dumps(body)}\n\n"

            yield chunk({"role": "assistant", "content": ""})
            for step in trace.steps:
                yield chunk({"reasoning_content": step.text + "\n"})
            yield chunk({"content": content})
            yield chunk({}, "stop")
            yield "data: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")

    return app


def _text(content: str | list[dict[str, Any]] | None) -> str:
    if isinstance(content, list):  # content parts: keep the text ones
        return "\n".join(str(p.get("text", "")) for p in content if p.get("type") == "text")
    return content or ""


def serve(system_spec: str, model: str, *, kind: Kind = "exact", host: str = "127.0.0.1", port: int = 8000,
          max_prompt_chars: int = 8000, max_tokens_limit: int = 1024) -> None:
    """Build the system and serve it until interrupted."""
    uvicorn = require("uvicorn", "serve")
    system = get_system(system_spec, get_backend(model), kind)
    app = create_app(system, max_prompt_chars=max_prompt_chars, max_tokens_limit=max_tokens_limit)
    print(f"serving {system_spec} on http://{host}:{port}/v1 (model id {system.spec!r})", flush=True)
    uvicorn.run(app, host=host, port=port, log_level="warning")
