"""`cotscope serve`: a real uvicorn server on 127.0.0.1, called with the official openai client."""

import socket
import subprocess
import sys
import time
import urllib.request

import pytest

openai = pytest.importorskip("openai")
pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")


@pytest.fixture(scope="module")
def client():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, "-m", "cotscope.cli.main", "serve", "cot", "--model", "mock", "--kind", "numeric",
         "--port", str(port), "--max-prompt-chars", "200", "--max-tokens-limit", "64"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}/v1"
    deadline = time.time() + 60
    while True:
        try:
            urllib.request.urlopen(f"{url}/models", timeout=1).read()
            break
        except OSError:
            if proc.poll() is not None or time.time() > deadline:
                proc.kill()
                pytest.fail(f"server did not start: {proc.stderr.read().decode()[-2000:]}")
            time.sleep(0.2)
    yield openai.OpenAI(base_url=url, api_key="none", max_retries=0)
    proc.terminate()
    proc.wait(timeout=20)


def test_answer_and_reasoning(client):
    resp = client.chat.completions.create(model="cot", messages=[{"role": "user", "content": "Ann has 3 pens and buys 4 more."}])
    msg = resp.choices[0].message
    assert msg.content == "Answer: 4" or msg.content == "4"
    assert msg.model_extra["reasoning_content"] == "The question mentions 3.\nThe question mentions 4."
    assert resp.usage.completion_tokens > 0 and resp.model == "cot"
    assert [m.id for m in client.models.list().data] == ["cot"]


def test_streaming_gives_reasoning_then_answer(client):
    stream = client.chat.completions.create(model="cot", stream=True, messages=[{"role": "user", "content": "Ann has 3 pens and buys 4 more."}])
    reasoning, content, finish = "", "", None
    for chunk in stream:
        delta = chunk.choices[0].delta
        reasoning += (delta.model_extra or {}).get("reasoning_content") or ""
        content += delta.content or ""
        finish = chunk.choices[0].finish_reason or finish
    assert reasoning == "The question mentions 3.\nThe question mentions 4.\n"
    assert content.endswith("4") and finish == "stop"


@pytest.mark.parametrize(
    "kwargs, status, param",
    [
        (dict(model="other", messages=[{"role": "user", "content": "hi 1"}]), 404, "model"),
        (dict(model="cot", messages=[{"role": "system", "content": "only a system message"}]), 400, "messages"),
        (dict(model="cot", messages=[{"role": "user", "content": "x" * 500}]), 400, "messages"),
        (dict(model="cot", messages=[{"role": "user", "content": "hi 1"}], max_tokens=10_000), 400, "max_tokens"),
        (dict(model="cot", messages=[{"role": "user"}]), 400, None),
        (dict(model="cot", messages="not a list"), 400, "messages"),
    ],
)
def test_bad_requests_get_openai_errors(client, kwargs, status, param):
    with pytest.raises(openai.APIStatusError) as info:
        client.chat.completions.create(**kwargs)
    assert info.value.status_code == status
    err = info.value.body
    assert err["message"] and err["type"] == "invalid_request_error"
    if param:
        assert err["param"].startswith(param)
