"""Published chat templates for the tests, read where they are distributed: llama.cpp keeps the
templates of the models it supports under ``models/templates/`` (each fetched from its model's
repository), and llama-cpp-python's source distribution on PyPI vendors them. The sdist is
downloaded once with pip (about 77 MB) and the templates asked for are kept in a cache folder;
nothing from it is copied into this repository."""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

SDIST = "llama-cpp-python==0.3.36"  # pinned: the tests assert what these exact files render
FOLDER = "vendor/llama.cpp/models/templates/"
CACHE = Path(os.environ.get("COTSCOPE_TEMPLATE_CACHE", Path.home() / ".cache" / "cotscope" / "templates" / SDIST.split("==")[1]))


def published_template(name: str) -> str:
    """The text of ``models/templates/<name>.jinja`` as llama.cpp distributes it."""
    path = CACHE / f"{name}.jinja"
    if not path.exists():
        _fetch()
    if not path.exists():
        raise FileNotFoundError(f"{SDIST} has no {FOLDER}{name}.jinja")
    return path.read_text(encoding="utf-8")


def _fetch() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:", SDIST, "-d", tmp, "-q"]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
        tarballs = list(Path(tmp).glob("*.tar.gz"))
        if not tarballs:
            raise RuntimeError(f"could not download {SDIST} from PyPI for its chat templates:\n{done.stderr[-2000:]}")
        CACHE.mkdir(parents=True, exist_ok=True)
        with tarfile.open(tarballs[0]) as tar:
            for member in tar.getmembers():
                head, _, tail = member.name.partition(FOLDER)
                if tail.endswith(".jinja") and "/" not in tail and member.isfile():
                    data = tar.extractfile(member).read()
                    part = CACHE / f"{tail}.part"
                    part.write_bytes(data)
                    part.replace(CACHE / tail)  # whole or absent, should a run be cut
