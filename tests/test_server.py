"""`edgellama serve` end to end, with the official openai client (sync and async) against a server
on a free loopback port, on SmolLM2. Results are checked against edgellama.Llama run in-process on
the same file (the server must give exactly what create_completion gives), alone and with 8
concurrent requests batched together. All waits are bounded."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import time

import httpx
import numpy as np
import pytest

openai = pytest.importorskip("openai", reason="pip install 'edgellama[test]' (openai client)")
pytest.importorskip("uvicorn", reason="pip install 'edgellama[server]'")

from conftest import subprocess_env  # noqa: E402
from server_process import ServerProcess  # noqa: E402

from edgellama import Llama  # noqa: E402

N_CTX = 512
PROMPTS = ["The capital of France is", "Once upon a time, there was a", "1, 2, 3, 4,", "def fibonacci(n):",
           "The quick brown fox", "My favourite colour is", "Water boils at", "In 1492, Columbus"]


@pytest.fixture(scope="module")
def server(smollm2_path):
    s = ServerProcess(str(smollm2_path), ["--parallel", "4", "-c", str(N_CTX), "-t", "2"], subprocess_env())
    yield s
    assert s.stop() == 0


@pytest.fixture(scope="module")
def llm(smollm2_path):
    with Llama(str(smollm2_path), n_ctx=N_CTX, n_threads=2) as m:
        yield m


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=server.base_url + "/v1", api_key="unused", timeout=60, max_retries=0)


def _metric(server, name: str) -> float:
    text = httpx.get(server.base_url + "/metrics", timeout=5).text
    for line in text.splitlines():
        if line.startswith(f"edgellama_{name} "):
            return float(line.split()[1])
    raise AssertionError(f"{name} not in /metrics:\n{text}")


def test_models_health_metrics(server, client, smollm2_path):
    models = client.models.list()
    assert [m.id for m in models.data] == [str(smollm2_path)]
    h = httpx.get(server.base_url + "/health", timeout=5).json()
    assert h["status"] == "ok" and h["slots_idle"] + h["slots_processing"] == 4
    assert _metric(server, "slots_total") == 4


def test_completion_equals_llama(client, llm):
    """Greedy, a stop string and logprobs: the server's choice equals Llama.create_completion's."""
    kw = dict(max_tokens=20, temperature=0, stop=["\n\n"], logprobs=3)
    got = client.completions.create(model="x", prompt=PROMPTS[0], **kw).model_dump()
    want = llm.create_completion(PROMPTS[0], **kw)
    for k in ("text", "finish_reason", "logprobs"):
        assert got["choices"][0][k] == want["choices"][0][k], k
    assert {k: got["usage"][k] for k in want["usage"]} == want["usage"]


def test_seeded_sampling_equals_llama(client, llm):
    kw = dict(max_tokens=16, temperature=0.9, top_k=40, seed=1234)
    got = client.completions.create(model="x", prompt=PROMPTS[1], max_tokens=16, temperature=0.9, seed=1234,
                                    extra_body={"top_k": 40})
    assert got.choices[0].text == llm.create_completion(PROMPTS[1], **kw)["choices"][0]["text"]


def test_chat_stream_equals_nonstream(client, llm):
    msgs = [{"role": "user", "content": "Name three colours."}]
    full = client.chat.completions.create(model="x", messages=msgs, max_tokens=24, temperature=0)
    chunks = list(client.chat.completions.create(model="x", messages=msgs, max_tokens=24, temperature=0, stream=True,
                                                 stream_options={"include_usage": True}))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == full.choices[0].message.content
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == \
        [full.choices[0].finish_reason]
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == full.usage.completion_tokens
    want = llm.create_chat_completion(msgs, max_tokens=24, temperature=0)
    assert full.choices[0].message.content == want["choices"][0]["message"]["content"]


def test_eight_concurrent_equal_alone(server, llm):
    """8 greedy requests at once (4 slots batched, 4 queued; half streamed) each equal the same
    request run alone on an in-process Llama."""
    want = [llm.create_completion(p, max_tokens=24, temperature=0)["choices"][0]["text"] for p in PROMPTS]
    steps0, rows0 = _metric(server, "batch_steps_total"), _metric(server, "batch_rows_total")

    async def main():
        ac = openai.AsyncOpenAI(base_url=server.base_url + "/v1", api_key="unused", timeout=120, max_retries=0)

        async def one(i):
            if i % 2:
                stream = await ac.completions.create(model="x", prompt=PROMPTS[i], max_tokens=24, temperature=0,
                                                     stream=True)
                return "".join([c.choices[0].text async for c in stream])
            r = await ac.completions.create(model="x", prompt=PROMPTS[i], max_tokens=24, temperature=0)
            return r.choices[0].text

        try:
            return await asyncio.wait_for(asyncio.gather(*(one(i) for i in range(8))), 120)
        finally:
            await ac.close()

    got = asyncio.run(main())
    assert got == want
    steps = _metric(server, "batch_steps_total") - steps0
    rows = _metric(server, "batch_rows_total") - rows0
    # batching happened: fewer forward passes than rows (8 x 24 decode rows alone would be 1 row/step)
    assert rows / steps > 1.5, (rows, steps)


def test_metrics_show_the_step_cost_fit(server, client):
    """After a prompt (one multi-row step) and its decode steps (1 row) the engine's step-time fit
    exists: a positive cost per row, a fixed part that is not negative, both in /metrics."""
    for prompt in ("Count: one, two, three, four, five, six,", "Colours of the rainbow: red, orange, yellow,"):
        client.completions.create(model="x", prompt=prompt, max_tokens=8, temperature=0)
    per_row, fixed = _metric(server, "batch_row_seconds"), _metric(server, "batch_step_fixed_seconds")
    assert 0 < per_row < 1 and 0 <= fixed < 1, (per_row, fixed)


def test_prompt_prefix_reuse(server, client):
    prompt = "The history of the Roman Empire is long and complicated. " * 6
    client.completions.create(model="x", prompt=prompt, max_tokens=2, temperature=0)
    rows0 = _metric(server, "batch_rows_total")
    client.completions.create(model="x", prompt=prompt, max_tokens=2, temperature=0)
    # the second request re-evaluates only the last prompt token plus its generated token(s)
    assert _metric(server, "batch_rows_total") - rows0 <= 3


@pytest.mark.parametrize("body,status,needle", [
    (b"{not json", 400, "not valid JSON"),
    (b"[1, 2]", 400, "JSON object"),
    (json.dumps({"max_tokens": 4}).encode(), 422, "prompt"),
    (json.dumps({"prompt": "hi", "max_tokens": "many"}).encode(), 422, "max_tokens"),
    (json.dumps({"prompt": "hi", "max_tokens": -5}).encode(), 400, "max_tokens must be positive"),
    (json.dumps({"prompt": "hi " * 700, "max_tokens": 4}).encode(), 400, "context window"),
    (json.dumps({"prompt": "hi", "n": 2}).encode(), 400, "n=2"),
    (json.dumps({"prompt": "hi", "logit_bias": {"99999999": 1}}).encode(), 400, "out of range"),
])
def test_bad_completion_requests(server, body, status, needle):
    r = httpx.post(server.base_url + "/v1/completions", content=body, timeout=30,
                   headers={"content-type": "application/json"})
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert needle in err["message"] and err["type"]


def test_bad_requests_other(server, client):
    base = server.base_url
    r = httpx.post(base + "/v1/chat/completions", json={"messages": []}, timeout=10)
    assert r.status_code == 422 and "messages" in r.json()["error"]["message"]
    r = httpx.post(base + "/v1/chat/completions", json={"messages": [{"role": "user", "content": "x"}],
                                                        "response_format": {"type": "json_object"},
                                                        "max_tokens": 8}, timeout=30)
    assert r.status_code == 200, r.text
    r = httpx.post(base + "/v1/chat/completions", json={"messages": [{"role": "user", "content": "x"}],
                                                        "response_format": {"type": "json_schema", "json_schema": {
                                                            "name": "bad", "schema": {"type": "no-such-type"}}}},
                                                        timeout=30)
    assert r.status_code == 400, r.text
    r = httpx.post(base + "/v1/completions", content=b"x" * (5 << 20), timeout=30)
    assert r.status_code == 413 and "limit" in r.json()["error"]["message"]
    assert httpx.get(base + "/v1/nothing", timeout=10).status_code == 404
    assert httpx.get(base + "/v1/completions", timeout=10).status_code == 405
    with pytest.raises(openai.BadRequestError):
        client.completions.create(model="x", prompt="hi", max_tokens=-1)
    r = httpx.post(base + "/v1/embeddings", json={"input": "hello"}, timeout=10)
    assert r.status_code == 501 and "--embedding" in r.json()["error"]["message"]
    # the server lives on
    assert client.completions.create(model="x", prompt="hi", max_tokens=2, temperature=0).choices[0].text


def _wait_idle(server, timeout=10.0) -> float:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        h = httpx.get(server.base_url + "/health", timeout=5).json()
        if h["slots_processing"] == 0 and h["queue_depth"] == 0:  # nothing running, nothing admitted
            return time.monotonic() - t0
        time.sleep(0.05)
    raise AssertionError("slot not freed")


def test_client_disconnect_frees_slot(server):
    cancelled0 = _metric(server, "requests_cancelled_total")
    with httpx.Client(timeout=30) as c:
        with c.stream("POST", server.base_url + "/v1/completions",
                      json={"prompt": "1, 2, 3, 4, 5,", "max_tokens": 400, "temperature": 0,
                            "stream": True}) as r:
            assert r.status_code == 200
            n = 0
            for line in r.iter_lines():
                n += line.startswith("data: {")
                if n == 2:
                    assert httpx.get(server.base_url + "/health", timeout=5).json()["slots_processing"] == 1
                if n >= 3:
                    break  # leaving iter_lines early closes the connection (httpcore): a disconnect
    # the stream is closed mid-way: the slot must be free long before 400 tokens could be made
    assert _wait_idle(server, timeout=5.0) < 5.0
    assert _metric(server, "requests_cancelled_total") == cancelled0 + 1


@pytest.fixture(scope="module")
def keyed_server(smollm2_path):
    s = ServerProcess(str(smollm2_path), ["--parallel", "1", "--queue", "1", "-c", "256", "-t", "1",
                                          "--api-key", "sekrit-key", "--cors", "http://app.test"], subprocess_env())
    yield s
    s.stop()


def test_auth(keyed_server):
    base = keyed_server.base_url + "/v1"
    for key in ("wrong", "sekrit-key-and-more", ""):
        c = openai.OpenAI(base_url=base, api_key=key or "x", timeout=30, max_retries=0)
        with pytest.raises(openai.AuthenticationError):
            c.models.list()
    assert httpx.get(base + "/models", timeout=5).status_code == 401  # no header at all
    assert httpx.get(keyed_server.base_url + "/health", timeout=5).status_code == 200  # public
    ok = openai.OpenAI(base_url=base, api_key="sekrit-key", timeout=30, max_retries=0)
    assert ok.completions.create(model="x", prompt="Hi", max_tokens=2, temperature=0).choices[0].text is not None


def test_cors_only_for_the_given_origin(keyed_server, server):
    pre = {"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "authorization"}
    r = httpx.options(keyed_server.base_url + "/v1/completions", headers={"Origin": "http://app.test", **pre})
    assert r.status_code == 200 and r.headers["access-control-allow-origin"] == "http://app.test"
    r = httpx.options(keyed_server.base_url + "/v1/completions", headers={"Origin": "http://evil.test", **pre})
    assert "access-control-allow-origin" not in r.headers
    r = httpx.get(server.base_url + "/health", headers={"Origin": "http://app.test"})  # no --cors: none
    assert "access-control-allow-origin" not in r.headers


def test_queue_full_is_503(keyed_server):
    """1 slot + 1 queued: a third concurrent request gets 503, and the server recovers."""
    hdr = {"Authorization": "Bearer sekrit-key"}
    body = {"prompt": "1, 2, 3, 4, 5,", "max_tokens": 200, "temperature": 0, "stream": True}
    with httpx.Client(timeout=30, headers=hdr) as c:
        with c.stream("POST", keyed_server.base_url + "/v1/completions", json=body) as r1, \
                c.stream("POST", keyed_server.base_url + "/v1/completions", json=body) as r2:
            assert r1.status_code == 200 and r2.status_code == 200
            r3 = c.post(keyed_server.base_url + "/v1/completions", json={**body, "stream": False})
            assert r3.status_code == 503 and r3.json()["error"]["type"] == "server_overloaded"
    assert _wait_idle(keyed_server, timeout=10.0) < 10.0
    ok = httpx.post(keyed_server.base_url + "/v1/completions", headers=hdr, timeout=30,
                    json={"prompt": "Hi", "max_tokens": 2})
    assert ok.status_code == 200


def test_sigterm_ends_streams_and_exits_zero(smollm2_path):
    s = ServerProcess(str(smollm2_path), ["--parallel", "1", "-c", "256", "-t", "1"], subprocess_env())
    try:
        with httpx.Client(timeout=30) as c:
            with c.stream("POST", s.base_url + "/v1/completions",
                          json={"prompt": "1, 2, 3, 4, 5,", "max_tokens": 240, "temperature": 0, "stream": True}) as r:
                lines = r.iter_lines()
                assert next(l for l in lines if l.startswith("data: {"))
                s.proc.send_signal(signal.SIGTERM)
                t0 = time.monotonic()
                rest = [l for l in lines if l]  # the stream ends (cancelled) instead of hanging
                assert time.monotonic() - t0 < 15
                # cut short: an OpenAI error event (the openai client raises on it), then [DONE]
                assert rest[-1] == "data: [DONE]" and "shutting down" in rest[-2], rest[-3:]
        assert s.proc.wait(20) == 0
    finally:
        s.stop()


def test_serve_without_extra_says_what_to_install(monkeypatch, capsys, smollm2_path):
    import edgellama.server as srv
    from edgellama import cli

    monkeypatch.setattr(srv, "_REQUIRED", srv._REQUIRED + (("edgellama_no_such_module_xyz", "sse-starlette"),))
    assert cli.main(["serve", str(smollm2_path)]) == 1
    assert 'pip install "edgellama[server]"' in capsys.readouterr().err


def test_is_loopback():
    from edgellama.server.run import is_loopback

    assert all(map(is_loopback, ["127.0.0.1", "::1", "localhost", "127.0.0.2"]))
    assert not any(map(is_loopback, ["0.0.0.0", "192.168.1.5", "::", "example.com"]))


@pytest.mark.parametrize("distinct", [False, True])
def test_load_benchmark_tiny_run(server, tmp_path, distinct):
    """benchmarks/server_load.py against the running server: 1 and 2 clients x 4 tokens, the same
    prompt for all (the second client of the 2-client round gets it copied from the slot the
    earlier rounds left it in) or a distinct one each (nothing shared)."""
    mod = _load_benchmark_module()
    out = tmp_path / "load.json"
    assert mod.main(["--url", server.base_url, "--clients", "1,2", "-n", "4", "--timeout", "60",
                     "--json", str(out)] + ["--distinct-prompts"] * distinct) == 0
    rows = json.loads(out.read_text())["rows"]
    assert [r["clients"] for r in rows] == [1, 2]
    for r in rows:
        assert r["failed"] == 0 and r["tokens"] == 4 * r["clients"] and r["aggregate_tok_s"] > 0
        assert r["ttft_p50_ms"] > 0 and r["itl_p50_ms"] > 0
        assert r["prompts"] == ("distinct" if distinct else "identical")
    if distinct:
        assert [(r["engine_prompt_cached"], r["engine_prompt_shared"]) for r in rows] == [(0, 0), (0, 0)]
    else:
        n = len(mod.Prompts(False).next())  # characters: more than its tokens
        # round 1 reuses the warm-up's slot; in round 2 one client does, the other gets a copy
        assert rows[0]["engine_prompt_shared"] == 0 and 10 < rows[0]["engine_prompt_cached"] < n
        assert rows[1]["engine_prompt_shared"] + rows[1]["engine_prompt_cached"] == 2 * rows[0]["engine_prompt_cached"]
        assert rows[1]["engine_prompt_shared"] > 10


def test_benchmark_distinct_prompts_share_no_token(smollm2_path, llama2_tokenizer_model):
    """--distinct-prompts: same length, and no two of 26 requests share their first token (SmolLM2's
    BPE and Llama 2's SentencePiece vocabularies)."""
    import sentencepiece as spm

    mod = _load_benchmark_module()
    prompts = mod.Prompts(True)
    texts = [prompts.next() for _ in range(26)]
    vocab = Llama(str(smollm2_path), vocab_only=True)
    sp = spm.SentencePieceProcessor(model_file=str(llama2_tokenizer_model))
    for ids in ([vocab.tokenize(t.encode()) for t in texts], [sp.encode(t) for t in texts]):
        assert len({len(i) for i in ids}) == 1
        assert len({i[0] for i in ids}) == 26
    assert prompts.next().startswith("A1. ") and mod.Prompts(False).next() == mod.PROMPT


def test_load_benchmark_sampled_requests(server, tmp_path, monkeypatch):
    """--temperature: every request samples with its own seed (1, 2, ...), none fails."""
    mod = _load_benchmark_module()
    sent = []
    real = mod.httpx.AsyncClient.stream

    def spy(self, method, url, json=None, **kw):
        sent.append(json)
        return real(self, method, url, json=json, **kw)

    monkeypatch.setattr(mod.httpx.AsyncClient, "stream", spy)
    out = tmp_path / "load.json"
    assert mod.main(["--url", server.base_url, "--clients", "2", "-n", "4", "--timeout", "60",
                     "--temperature", "0.8", "--json", str(out)]) == 0
    assert [(b["temperature"], b["seed"]) for b in sent] == [(0.8, 1), (0.8, 2), (0.8, 3)]  # warm-up + 2
    assert json.loads(out.read_text())["rows"][0]["tokens"] == 8


def test_load_benchmark_pairs_each_round_with_the_one_client_round_before_it():
    """Repeated levels (1,4,1,4,1,4): every 4-client round over the 1-client round just before it,
    median and pairs; a single 1-client round serves every level after it (the default 1,2,4,8)."""
    mod = _load_benchmark_module()
    rows = [{"clients": c, "aggregate_tok_s": v} for c, v in [(1, 10.0), (4, 25.0), (1, 20.0), (4, 44.0), (1, 10.0), (4, 23.0)]]
    assert mod.paired_scaling(rows) == "4: 2.30x (pairs 2.50, 2.20, 2.30)"
    rows = [{"clients": c, "aggregate_tok_s": v} for c, v in [(1, 10.0), (2, 18.0), (4, 30.0), (8, 41.0)]]
    assert mod.paired_scaling(rows) == "2: 1.80x, 4: 3.00x, 8: 4.10x"
    assert mod.paired_scaling([{"clients": 4, "aggregate_tok_s": 5.0}]) == ""  # nothing to pair with


def _load_benchmark_module():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "server_load.py"
    spec = importlib.util.spec_from_file_location("server_load", path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules["server_load"] = mod  # dataclasses look their module up there
    spec.loader.exec_module(mod)
    return mod


# A stand-in server that logs 300 kB to stderr before it answers (llama-cpp-python's server logs
# ~200 kB while loading): more than a pipe holds, so a launcher that pipes stderr and does not read
# it leaves the server blocked on a write, never answering.
_CHATTY_SERVER = """
import http.server, sys
sys.stderr.write("llama_model_loader: x\\n" * 15000)
sys.stderr.flush()
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200); self.end_headers(); self.wfile.write(b'{"data": []}')
    def log_message(self, *a):
        sys.stderr.write("request\\n")
http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
"""


def test_load_benchmark_launches_a_server_that_logs_a_lot():
    mod = _load_benchmark_module()
    port = mod.free_port()
    launched = mod.Launched([sys.executable, "-c", _CHATTY_SERVER, str(port)], f"http://127.0.0.1:{port}",
                            timeout=30)
    try:
        assert launched.proc.poll() is None
        assert "llama_model_loader" in launched.log_tail()
    finally:
        launched.stop()
    assert launched.proc.poll() is not None


def test_structured_output_through_the_server(server, client):
    """response_format (OpenAI's json_schema) and tools reach the grammar engine through the server:
    the content validates against the schema; a required tool call comes back as tool_calls."""
    schema = {"type": "object", "properties": {"city": {"type": "string", "maxLength": 20}}, "required": ["city"]}
    r = client.chat.completions.create(
        model="m", messages=[{"role": "user", "content": "Name a city in France."}], temperature=0, max_tokens=40,
        response_format={"type": "json_schema", "json_schema": {"name": "c", "schema": schema}})
    assert r.choices[0].finish_reason == "stop"
    assert isinstance(json.loads(r.choices[0].message.content)["city"], str)
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {
        "type": "object", "properties": {"city": {"type": "string", "maxLength": 20}}, "required": ["city"]}}}]
    r = client.chat.completions.create(
        model="m", messages=[{"role": "user", "content": "Weather in Paris?"}], temperature=0, max_tokens=60,
        tools=tools, tool_choice="required")
    call = r.choices[0].message.tool_calls[0]
    assert r.choices[0].finish_reason == "tool_calls" and call.function.name == "get_weather"
    assert isinstance(json.loads(call.function.arguments)["city"], str)


def test_prompt_lookup_in_the_server_gives_the_same_text(server, client, llm):
    """The server drafts with prompt lookup for long prompts (--draft auto, the default): a greedy
    answer that copies the prompt must equal Llama alone (no drafter), and drafts must be kept."""
    prompt = ("Copy the list exactly.\nList: apples, pears, plums, cherries, grapes, lemons, limes, figs, dates, "
              "kiwis, mangoes, melons.\nCopy: apples, pears,")
    before = _metric(server, "draft_tokens_accepted_total")
    r = client.completions.create(model="m", prompt=prompt, max_tokens=32, temperature=0)
    assert llm.draft_model is None
    want = llm(prompt, max_tokens=32, temperature=0)["choices"][0]["text"]
    assert r.choices[0].text == want
    assert _metric(server, "draft_tokens_accepted_total") > before


def test_embeddings_endpoint(smollm2_path):
    """With --embedding, /v1/embeddings answers through the openai client with what
    Llama(embedding=True).create_embedding gives for the same inputs (several inputs batched)."""
    s = ServerProcess(str(smollm2_path), ["--parallel", "1", "-c", "128", "-t", "2", "--embedding"], subprocess_env())
    try:
        c = openai.OpenAI(base_url=s.base_url + "/v1", api_key="unused", timeout=60, max_retries=0)
        texts = ["The capital of France is Paris.", "Bonjour", "A third, longer input about the weather."]
        r = c.embeddings.create(model="m", input=texts)
        with Llama(str(smollm2_path), n_ctx=128, n_threads=2, embedding=True, verbose=False) as m:
            want = m.create_embedding(texts)
        assert [d.index for d in r.data] == [0, 1, 2]
        for got, w in zip(r.data, want["data"]):
            np.testing.assert_array_equal(np.array(got.embedding, dtype=np.float32),
                                          np.array(w["embedding"], dtype=np.float32))
        assert r.usage.prompt_tokens == want["usage"]["prompt_tokens"]
        bad = httpx.post(s.base_url + "/v1/embeddings", json={"input": [1, 2]}, timeout=10)
        assert bad.status_code == 400 and "input" in bad.json()["error"]["message"]
    finally:
        assert s.stop() == 0
