"""Any OpenAI-compatible server: ``openai/<model>@<base-url>`` (or ``@<url1>,<url2>,...``
for several replicas; each conversation sticks to one, so its prefix stays cached there).

vLLM (``vllm serve``), llama.cpp's server, llama-cpp-python's server, Ollama and hosted APIs
all speak this protocol, so a GPU cluster is one flag away from a laptop run.

Prompts go to the completions endpoint with the chat template applied here, so that a
reasoning prefix can be continued exactly as on a local model. Options (after ``?``):

- ``tokenizer``: hub id or local path (or ``gguf:<file>``) whose chat template and tokenizer
  are used; without it, the ChatML template (Qwen, SmolLM, ...) and the server's tokenize
  endpoint (vLLM ``/tokenize``, llama-cpp-python ``/extras/tokenize``).
- ``mode``: ``completions`` (default) or ``chat`` for servers with only chat completions (then
  no reasoning prefix can be continued and no continuation can be scored).
- ``logprobs``: how continuations are scored: ``top`` (default: walk the next-token top-k
  lists, ``top_k`` default 20; works on any server that returns logprobs) or ``echo``
  (prompt log-probabilities with ``echo=True``, exact for long continuations; vLLM. Not
  llama-cpp-python 0.3, whose echoed log-probabilities are shifted by one position).
- ``cache_prompt``: send llama.cpp's ``cache_prompt: true`` (reuse the KV cache of the
  longest common prefix with the previous request). vLLM caches prefixes by itself
  (automatic prefix caching, on by default in its V1 engine).
- ``concurrency`` (default 4: requests in flight at once, through a bounded thread pool), ``timeout`` seconds (default 120), ``max_retries`` (default 3:
  connection errors, timeouts, 408, 409, 429 and 5xx are retried with exponential backoff and
  jitter, honouring ``Retry-After``; then a clear error, and finished samples stay on disk),
  ``api_key`` (default: the ``OPENAI_API_KEY`` environment variable, else ``none``).
- ``enable_thinking``, ``reasoning_effort``: chat-template options (as for ``hf/``): given to
  the template rendered here (``tokenizer=``), or with ``mode=chat`` sent as the request's
  ``chat_template_kwargs`` (vLLM, SGLang and llama.cpp's server read them; ``reasoning_effort``
  also as the request's own field).
- ``stream``: receive each reply as it is written (server-sent events; text and
  ``reasoning_content`` deltas are joined), for long thinking traces that would otherwise sit
  silent past a proxy's idle timeout. A stream that breaks off is a named error.
"""

from __future__ import annotations

import json
import os
import urllib.request
import zlib
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Literal

from .._errors import CotscopeError, require
from ..trace import Message, ToolCall
from .base import Backend, Completion, GenerationParams, Prompt, ToolTurn, cut_at_stop, spec_settings
from .registry import register_backend

CHATML_SYSTEM = "You are a helpful assistant."


def render_chatml(prompt: Prompt) -> str:
    msgs = list(prompt.messages)
    text = ""
    if not msgs or msgs[0].role != "system":
        text += f"<|im_start|>system\n{CHATML_SYSTEM}<|im_end|>\n"
    for m in msgs:
        text += f"<|im_start|>{m.role}\n{m.content}<|im_end|>\n"
    return text + "<|im_start|>assistant\n" + prompt.prefix


class OpenAIBackend(Backend):
    def __init__(self, model: str, base_url: str, opts: dict[str, str] | None = None) -> None:
        openai = require("openai", "openai")
        got, self.template_kwargs = settings(model, opts or {})  # the template options: to the template rendered here (tokenizer=), or the server's (mode=chat)
        self.model = model
        self.base_url = base_url.split(",")[0].strip().rstrip("/")
        self.mode, self.concurrency, self.logprobs, self.top_k = got["mode"], got["concurrency"], got["logprobs"], got["top_k"]
        tokenizer = got["tokenizer"]
        api_key = got["api_key"] or os.environ.get("OPENAI_API_KEY") or "none"
        # Several replicas: one client each; a conversation always goes to the same replica,
        # so the server's prefix cache sees all of its truncation points.
        self.clients = [
            openai.OpenAI(base_url=url.strip().rstrip("/"), api_key=api_key, timeout=got["timeout"], max_retries=got["max_retries"])
            for url in base_url.split(",")
        ]
        self.extra_body = {"cache_prompt": True} if got["cache_prompt"] else None
        self.stream = got["stream"]
        self._tok = _load_tokenizer(tokenizer) if tokenizer else None
        self._server_tokenize: Callable[[str], int] | None = None
        self.n_generated_tokens = 0

    # -- text ------------------------------------------------------------------------------
    def render(self, prompt: Prompt) -> str:
        if self._tok is not None and self._tok.chat_template:
            msgs = [{"role": m.role, "content": m.content} for m in prompt.messages]
            return self._tok.apply_chat_template(msgs, add_generation_prompt=True, tokenize=False, **self.template_kwargs) + prompt.prefix
        return render_chatml(prompt)

    def count_tokens(self, text: str) -> int:
        if self._tok is not None:
            return len(self._tok(text, add_special_tokens=False)["input_ids"])
        if self._server_tokenize is None:
            self._server_tokenize = self._find_tokenize_endpoint()
        return self._server_tokenize(text)

    def _find_tokenize_endpoint(self) -> Callable[[str], int]:
        root = self.base_url.removesuffix("/v1")
        candidates = [
            (f"{root}/tokenize", lambda t: {"model": self.model, "prompt": t, "add_special_tokens": False}),
            (f"{root}/extras/tokenize", lambda t: {"input": t}),
        ]
        for url, body in candidates:
            try:
                if not isinstance(_post_json(url, body("probe")).get("tokens"), list):
                    continue
            except (OSError, ValueError, AttributeError):
                continue
            return lambda t, url=url, body=body: len(_post_json(url, body(t))["tokens"])
        raise CotscopeError(
            f"the server at {self.base_url} has no tokenize endpoint; pass ?tokenizer=<hub id or path> so tokens can be counted"
        )

    # -- calls -----------------------------------------------------------------------------
    def _map(self, fn, items: Sequence):
        if self.concurrency <= 1 or len(items) <= 1:
            return [fn(x) for x in items]
        with ThreadPoolExecutor(self.concurrency) as pool:
            return list(pool.map(fn, items))

    def _call(self, what: str, client, fn):
        """Run `fn(client)`; turn the client's errors into ones that name that replica."""
        openai = require("openai", "openai")
        url = str(client.base_url).rstrip("/")
        try:
            return fn(client)
        except openai.APITimeoutError as exc:
            raise CotscopeError(
                f"the server at {url} did not answer {what} in time ({client.timeout} s, "
                f"{client.max_retries} retries); raise ?timeout= or check the server"
            ) from exc
        except openai.APIConnectionError as exc:
            raise CotscopeError(
                f"cannot reach the server at {url} ({what}, after {client.max_retries} retries): {exc}"
            ) from exc
        except openai.APIStatusError as exc:
            raise CotscopeError(
                f"server at {url} refused {what}: HTTP {exc.status_code} (after {client.max_retries} retries): {exc.message}"
            ) from exc

    def _client_for(self, key: str):
        return self.clients[zlib.crc32(key.encode()) % len(self.clients)]

    def _request(self, params: GenerationParams) -> dict:
        """The arguments every generation request carries."""
        common = dict(model=self.model, extra_body=self.extra_body, max_tokens=params.max_new_tokens, temperature=params.temperature,
                      top_p=params.top_p, seed=params.seed)
        if params.stop:
            common["stop"] = list(params.stop)[:4]  # the API allows at most 4
        if self.mode == "chat" and self.template_kwargs:  # vLLM, SGLang and llama.cpp's server read chat_template_kwargs
            common["extra_body"] = {**(self.extra_body or {}), "chat_template_kwargs": self.template_kwargs,
                                    **({"reasoning_effort": self.template_kwargs["reasoning_effort"]} if "reasoning_effort" in self.template_kwargs else {})}
        return common

    def generate(self, prompts: Sequence[Prompt], params: GenerationParams) -> list[Completion]:
        return self._map(lambda p: self._generate_one(p, params), prompts)

    def _generate_one(self, prompt: Prompt, params: GenerationParams) -> Completion:
        client = self._client_for(repr(prompt.messages))
        common = self._request(params)
        said = None  # whether the server says a stop string ended it
        if self.mode == "chat":
            if prompt.prefix:
                raise CotscopeError("mode=chat cannot continue from a reasoning prefix; use mode=completions")
            msgs = [{"role": m.role, "content": m.content} for m in prompt.messages]
            if self.stream:
                text, reasoning, finish, usage = self._call("a streamed chat completion", client, lambda c: _joined(
                    c.chat.completions.create(messages=msgs, stream=True, stream_options={"include_usage": True}, **common)))
            else:
                resp = self._call("a chat completion", client, lambda c: c.chat.completions.create(messages=msgs, **common))
                message = resp.choices[0].message
                text, reasoning, finish, usage = message.content or "", _reasoning(message), resp.choices[0].finish_reason, resp.usage
        else:
            rendered = self.render(prompt)
            if self.stream:
                text, reasoning, finish, usage = self._call("a streamed completion", client, lambda c: _joined(
                    c.completions.create(prompt=rendered, stream=True, stream_options={"include_usage": True}, **common)))
            else:
                resp = self._call("a completion", client, lambda c: c.completions.create(prompt=rendered, **common))
                text, finish, usage = resp.choices[0].text or "", resp.choices[0].finish_reason, resp.usage
                said = _stop_said(resp.choices[0], params.stop)
            reasoning = None
        finish = finish or "stop"
        text, hit = cut_at_stop(text, params.stop)
        n_gen = usage.completion_tokens if usage else self.count_tokens(text)
        self.n_generated_tokens += n_gen
        return Completion(
            text=text,
            n_prompt_tokens=usage.prompt_tokens if usage else 0,
            n_generated_tokens=n_gen,
            finish_reason="stop" if hit else ("length" if finish == "length" else "stop"),
            reasoning=reasoning if isinstance(reasoning, str) else None,
            stop_hit=True if hit else (False if finish == "length" else said),
        )

    @property
    def can_continue(self) -> bool:
        """Whether an assistant turn can be continued (a prefix handed over): not through the chat endpoint."""
        return self.mode != "chat"

    def tool_chat(self, messages: Sequence[Message], tools: list[dict], params: GenerationParams) -> ToolTurn:
        """One assistant turn through the chat endpoint with `tools` (OpenAI's function-calling
        schema); the calls come back as data, never run here."""
        client = self._client_for(repr(messages[:2]))
        common = self._request(params)
        msgs = [_chat_message(m) for m in messages]
        resp = self._call("a chat completion with tools", client, lambda c: c.chat.completions.create(messages=msgs, tools=tools, **common))
        choice = resp.choices[0]
        text, hit = cut_at_stop(choice.message.content or "", params.stop)
        calls = tuple(ToolCall(id=c.id or f"call_{i}", name=c.function.name, arguments=c.function.arguments or "")
                      for i, c in enumerate(choice.message.tool_calls or []) if getattr(c, "function", None) is not None)
        usage = resp.usage
        n_gen = usage.completion_tokens if usage else self.count_tokens(text)
        self.n_generated_tokens += n_gen
        finish = "length" if choice.finish_reason == "length" and not hit and not calls else "stop"
        return ToolTurn(text=text, calls=calls, n_prompt_tokens=usage.prompt_tokens if usage else 0, n_generated_tokens=n_gen, finish_reason=finish)

    def score(self, prompts: Sequence[Prompt], continuations: Sequence[Sequence[str]]) -> list[list[float]]:
        if self.mode == "chat":
            raise CotscopeError("mode=chat cannot score continuations; use mode=completions")
        one = self._score_echo if self.logprobs == "echo" else self._score_top
        cache: dict[str, dict[str, float]] = {}
        jobs = [(self.render(p), c, cache, repr(p.messages)) for p, conts in zip(prompts, continuations, strict=True) for c in conts]
        flat = self._map(lambda job: one(*job), jobs)
        out, i = [], 0
        for conts in continuations:
            out.append(flat[i : i + len(conts)])
            i += len(conts)
        return out

    def _next_token_logprobs(self, context: str, cache: dict[str, dict[str, float]], key: str) -> dict[str, float]:
        if context not in cache:
            resp = self._call(
                "next-token log-probabilities",
                self._client_for(key),
                lambda c: c.completions.create(
                    model=self.model, prompt=context, max_tokens=1, logprobs=self.top_k, temperature=0,
                    extra_body=self.extra_body,
                ),
            )
            lp = resp.choices[0].logprobs
            if lp is None or not lp.top_logprobs or not lp.top_logprobs[0]:
                raise CotscopeError(f"the server at {self.base_url} returned no top log-probabilities")
            cache[context] = dict(lp.top_logprobs[0])
        return cache[context]

    def _score_top(self, context: str, continuation: str, cache: dict[str, dict[str, float]], key: str) -> float:
        """Walk the continuation token by token through the next-token top-k lists.

        Exact while every token of the continuation is in the top-k; past that, the lowest
        top-k log-probability bounds the rest from above and the walk stops. Candidates that
        share a context share its request.
        """
        total, rest, ctx = 0.0, continuation, context
        while rest:
            top = self._next_token_logprobs(ctx, cache, key)
            match = max((t for t in top if t and rest.startswith(t)), key=len, default=None)
            if match is None:
                return total + min(top.values())
            total += top[match]
            rest, ctx = rest[len(match) :], ctx + match
        return total

    def _score_echo(self, context: str, continuation: str, cache: dict[str, dict[str, float]], key: str) -> float:
        # echo=True returns the prompt's own token log-probabilities (vLLM); the
        # continuation's tokens are those starting at or after len(context).
        resp = self._call(
            "prompt log-probabilities",
            self._client_for(key),
            lambda c: c.completions.create(
                model=self.model, prompt=context + continuation, max_tokens=1, echo=True, logprobs=1, temperature=0,
                extra_body=self.extra_body,
            ),
        )
        lp = resp.choices[0].logprobs
        if lp is None or not lp.token_logprobs:
            raise CotscopeError(f"the server at {self.base_url} returned no prompt log-probabilities (echo=True)")
        end = len(context) + len(continuation)
        total, seen = 0.0, False
        for offset, value in zip(lp.text_offset, lp.token_logprobs, strict=False):
            if offset >= end:
                break  # the generated token after the echo
            if offset >= len(context) and value is not None:
                total += value
                seen = True
        if not seen and continuation:
            raise CotscopeError(f"the server at {self.base_url} returned no log-probabilities for {continuation!r}")
        return total


def _chat_message(m: Message) -> dict:
    """A cotscope message in the chat API's form (tool calls and tool results included)."""
    d: dict = {"role": m.role, "content": m.content}
    if m.tool_calls:
        d["content"] = m.content or None
        d["tool_calls"] = [{"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}} for c in m.tool_calls]
    if m.role == "tool":
        d["tool_call_id"] = m.tool_call_id
    return d


def _post_json(url: str, body: dict) -> dict:
    req = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as resp:  # noqa: S310 - user-given server URL
        return json.loads(resp.read())


def _load_tokenizer(source: str):
    transformers = require("transformers", "hf")
    if source.startswith("gguf:"):
        path = Path(source.removeprefix("gguf:"))
        return transformers.AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    return transformers.AutoTokenizer.from_pretrained(source)


def _settings(mode: Literal["completions", "chat"] = "completions", concurrency: int = 4, logprobs: Literal["top", "echo"] = "top",
              top_k: int = 20, tokenizer: str | None = None, api_key: str | None = None, timeout: float = 120.0, max_retries: int = 3,
              cache_prompt: bool = False, stream: bool = False) -> dict:
    """``openai/``'s options with their types and defaults (the chat-template options aside): a
    spec's options are parsed against this signature (`_options.parse_options`)."""
    return dict(locals())


def settings(model: str, opts: dict[str, str]) -> tuple[dict, dict]:
    """A spec's options, typed and checked: (the client's settings, the chat template's)."""
    got, template = spec_settings(_settings, opts, f"openai/{model}", least={"concurrency": 1, "top_k": 0, "max_retries": 0})
    if got["timeout"] <= 0:
        raise CotscopeError(f"option timeout={got['timeout']} for openai/{model}: must be above 0")
    return got, template


def _check_openai(rest: str, opts: dict[str, str]) -> None:
    model, sep, url = rest.partition("@")
    if not sep or not model or not all(u.startswith(("http://", "https://")) for u in url.split(",")):
        raise CotscopeError(f"openai backend wants openai/<model>@<base-url>, e.g. openai/qwen@http://127.0.0.1:8000/v1; got {rest!r}")
    settings(model, opts)  # every option typed and checked before any request


@register_backend("openai", check=_check_openai)
def _make_openai(rest: str, opts: dict[str, str]) -> Backend:
    _check_openai(rest, opts)
    model, _, url = rest.partition("@")
    return OpenAIBackend(model, url, opts)


def _stop_said(choice, stop: tuple[str, ...]) -> bool | None:
    """Whether the server says the completion ended on one of `stop` (vLLM's ``stop_reason``: the
    stop string, or the end token's id or None when it ended on that); None where it does not say."""
    extra = getattr(choice, "model_extra", None) or {}
    if "stop_reason" not in extra:
        return None
    return isinstance(extra["stop_reason"], str) and extra["stop_reason"] in stop


def _reasoning(part) -> str | None:
    """The thinking a server with a reasoning parser (vLLM, SGLang, llama.cpp's
    --reasoning-format, DeepSeek's API) returns apart from the text, in a message or a delta."""
    value = getattr(part, "reasoning_content", None) or getattr(part, "reasoning", None)
    return value if isinstance(value, str) else None


def _joined(stream) -> tuple[str, str | None, str | None, object]:
    """A streamed reply, joined: (text, reasoning or None, finish reason, usage)."""
    openai = require("openai", "openai")
    text, reasoning, finish, usage = [], [], None, None
    try:
        for chunk in stream:
            usage = getattr(chunk, "usage", None) or usage
            for choice in chunk.choices or []:
                delta = getattr(choice, "delta", None)
                text.append((delta.content if delta is not None else getattr(choice, "text", None)) or "")
                if delta is not None and (r := _reasoning(delta)):
                    reasoning.append(r)
                finish = choice.finish_reason or finish
    except Exception as exc:
        # httpx's protocol errors (a dropped connection) reach here unwrapped, beside openai's own
        if not (isinstance(exc, (openai.APIError, OSError, ValueError)) or type(exc).__module__.startswith(("httpx", "httpcore"))):
            raise
        raise CotscopeError(f"the stream broke off after {len(''.join(text))} characters of text and {len(''.join(reasoning))} of reasoning: {exc}") from exc
    if finish is None:
        raise CotscopeError(f"the stream ended without a finish reason after {len(''.join(text))} characters of text (cut off?)")
    return "".join(text), "".join(reasoning) if reasoning else None, finish, usage
