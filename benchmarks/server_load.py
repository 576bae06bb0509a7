"""Bounded load test of an OpenAI-compatible server: for each concurrency C (default 1, 2, 4, 8),
C streaming clients each request one completion of N tokens (default 128) at the same time; reported
per C: aggregate generated tokens/s (all clients' tokens / wall time of the round), p50/p99
time-to-first-token and p50/p99 inter-token latency, failed requests and short streams.

Prompts: by default every client sends the same prompt (as agent frameworks and chat UIs send the
same system prompt), which a server with prompt-prefix caching prefills once. --distinct-prompts
gives every request of the run (warm-up included) its own prompt of the same length: a label whose
first token differs ("A0. ", "B0. ", ... 26 labels, then "A1. ") before the same text, so no request
shares a prompt token with another or with what an earlier round left in the caches. Report both.
For edgellama the engine's counters from /metrics are printed per round: forward passes, and the
prompt tokens reused from a slot's own cache or copied from another slot's.

Targets, launched by this script on a free loopback port with the same file, threads and slots:
    edgellama          python -m edgellama serve MODEL --parallel P -c CTX -t T
    llama-server       llama.cpp's server: --parallel P -cb -c P*CTX -t T
    llama-cpp-python   python -m llama_cpp.server (serves one request at a time)
or an already running server with --url.

    python benchmarks/server_load.py MODEL.gguf --target edgellama --target llama-server \\
        --llama-server /work/llamacpp/build-native/bin/llama-server -t 2 [--json out.json]

llama-cpp-python's server from its sdist over a native libllama, with its FastAPI stack in another
environment:

    LLAMA_CPP_PYTHON=/work/lcpp_venv/bin/python PYTHONPATH=/work/llamacpp/llama_cpp_python-0.3.36 \
    LLAMA_CPP_LIB_PATH=/work/llamacpp/build-native/bin \
        python benchmarks/server_load.py MODEL.gguf --target llama-cpp-python -t 2

It runs with --interrupt_requests false (its default lets each new request cut the running stream
short) and --verbose false.

Every request, stream and round has a timeout; nothing but 127.0.0.1 is contacted.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from typing import Dict, List, Optional

import httpx

HERE = os.path.dirname(os.path.abspath(__file__))
# the same long, open-ended prompt for every client, so that no stream ends early on EOS
PROMPT = "Count from one to one thousand, in words, separated by commas: one, two, three, four, five,"


class Prompts:
    """The prompt of each request: PROMPT for all, or (distinct) a new label before it each time."""

    def __init__(self, distinct: bool):
        self.distinct = distinct
        self.count = 0

    def next(self) -> str:
        if not self.distinct:
            return PROMPT
        k, self.count = self.count, self.count + 1
        # a letter then a digit: one token each in the BPE and SentencePiece vocabularies tried
        # (SmolLM2, Llama 2), so every label has the same length and a different first token
        return f"{chr(ord('A') + k % 26)}{k // 26 % 10}. {PROMPT}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch_command(target: str, model: str, port: int, parallel: int, ctx: int, threads: int,
                   llama_server: Optional[str]) -> List[str]:
    if target == "edgellama":
        return [sys.executable, "-m", "edgellama", "serve", model, "--host", "127.0.0.1", "--port", str(port),
                "--parallel", str(parallel), "-c", str(ctx), "-t", str(threads), "--log-level", "warning"]
    if target == "llama-server":
        if not llama_server:
            raise SystemExit("--target llama-server needs --llama-server PATH")
        return [llama_server, "-m", model, "--host", "127.0.0.1", "--port", str(port), "--parallel", str(parallel),
                "-cb", "-c", str(ctx * parallel), "-t", str(threads), "--log-disable"]
    if target == "llama-cpp-python":
        # LLAMA_CPP_PYTHON: an interpreter that has llama-cpp-python's server extra (its FastAPI stack
        # may not belong in edgellama's environment); default: this one.
        return [os.environ.get("LLAMA_CPP_PYTHON", sys.executable), "-m", "llama_cpp.server", "--model", model,
                "--host", "127.0.0.1", "--port", str(port),
                "--n_ctx", str(ctx), "--n_threads", str(threads),
                # queue concurrent requests: by default a new request interrupts the running stream
                "--interrupt_requests", "false",
                "--verbose", "false"]  # no llama.cpp logs, as --log-disable for llama-server
    raise SystemExit(f"unknown target {target}")


class Launched:
    def __init__(self, cmd: List[str], base_url: str, timeout: float = 120.0):
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (os.path.join(HERE, "..", "src"), env.get("PYTHONPATH")) if p)
        # stderr goes to a file, not a pipe: nobody reads a pipe while the server runs, and a server
        # that logs more than the pipe holds (llama-cpp-python's server prints llama.cpp's ~200 kB
        # load log by default) blocks on its next write and never answers.
        self.log = tempfile.TemporaryFile(mode="w+", encoding="utf-8", errors="replace")
        self.proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=self.log, text=True)
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise SystemExit(f"{cmd[0]} exited with {self.proc.returncode}: {self.log_tail()}")
            try:
                # llama-server answers 503 while loading, 200 when ready
                if httpx.get(base_url + "/v1/models", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                tail = self.log_tail()
                self.stop()
                raise SystemExit(f"{cmd[0]} did not start in {timeout:.0f} s; its stderr ends with: {tail}")
            time.sleep(0.3)

    def log_tail(self, n: int = 2000) -> str:
        self.log.flush()
        self.log.seek(0)
        return self.log.read()[-n:]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.log.close()


@dataclass
class StreamResult:
    ok: bool = False
    tokens: int = 0
    ttft: Optional[float] = None
    gaps: List[float] = field(default_factory=list)
    error: str = ""


def end_token_bias(model: Optional[str]) -> Dict[str, float]:
    """logit_bias that keeps the end-of-text tokens from being sampled, so every stream runs its full
    length on any server (random-weight benchmark models otherwise stop at random)."""
    if not model:
        return {}
    sys.path.insert(0, os.path.join(HERE, "..", "src"))
    from edgellama.gguf_file import GGUFFile

    meta = GGUFFile(model).metadata
    ids = {meta.get(k) for k in ("tokenizer.ggml.eos_token_id", "tokenizer.ggml.eot_token_id")}
    return {str(int(i)): -100.0 for i in ids if i is not None}


LOGIT_BIAS: Dict[str, float] = {}
TEMPERATURE = 0.0  # --temperature; above 0 each request also gets the next seed of SEEDS
SEEDS = itertools.count(1)


async def one_stream(client: httpx.AsyncClient, url: str, prompt: str, n_tokens: int, timeout: float) -> StreamResult:
    # ignore_eos: llama-server's switch for the same thing (the others ignore the field)
    body = {"prompt": prompt, "max_tokens": n_tokens, "temperature": TEMPERATURE, "stream": True,
            "stream_options": {"include_usage": True}, "ignore_eos": True}
    if TEMPERATURE > 0:
        body["seed"] = next(SEEDS)
    if LOGIT_BIAS:
        body["logit_bias"] = LOGIT_BIAS
    res = StreamResult()
    t0 = time.perf_counter()
    last = None
    chunks = 0
    usage_tokens = None
    async def read() -> None:
        nonlocal last, chunks, usage_tokens
        async with client.stream("POST", url + "/v1/completions", json=body) as r:
            if r.status_code != 200:
                res.error = f"HTTP {r.status_code}: {(await r.aread())[:200]!r}"
                return
            async for line in r.aiter_lines():
                if not line.startswith("data: "):
                    continue
                data = line[6:]
                if data == "[DONE]":
                    res.ok = True
                    return
                ev = json.loads(data)
                if "error" in ev:
                    res.error = str(ev["error"])[:200]
                    return
                if ev.get("usage"):
                    usage_tokens = ev["usage"].get("completion_tokens")
                choices = ev.get("choices") or []
                if not choices or not choices[0].get("text"):
                    continue
                now = time.perf_counter()
                if last is None:
                    res.ttft = now - t0
                else:
                    res.gaps.append(now - last)
                last = now
                chunks += 1

    try:
        await asyncio.wait_for(read(), timeout)
    except Exception as e:  # noqa: BLE001 - counted as a failed request
        res.error = f"{type(e).__name__}: {e}"
        res.ok = False
    res.tokens = usage_tokens if usage_tokens is not None else chunks
    return res


def pct(xs: List[float], q: float) -> float:
    if not xs:
        return float("nan")
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q / 100 * (len(xs) - 1))))]


async def run_level(url: str, clients: int, n_tokens: int, timeout: float, prompts: Prompts) -> Dict[str, float]:
    limits = httpx.Limits(max_connections=clients + 2)
    texts = [prompts.next() for _ in range(clients)]
    async with httpx.AsyncClient(timeout=timeout, limits=limits) as client:
        t0 = time.perf_counter()
        results = await asyncio.gather(*(one_stream(client, url, p, n_tokens, timeout) for p in texts))
        wall = time.perf_counter() - t0
    ok = [r for r in results if r.ok]
    tokens = sum(r.tokens for r in ok)
    gaps = [g for r in ok for g in r.gaps]
    ttfts = [r.ttft for r in ok if r.ttft is not None]
    return {
        "clients": clients, "wall_s": wall, "tokens": tokens, "aggregate_tok_s": tokens / wall if wall else 0.0,
        "ttft_p50_ms": 1e3 * pct(ttfts, 50), "ttft_p99_ms": 1e3 * pct(ttfts, 99),
        "itl_p50_ms": 1e3 * pct(gaps, 50), "itl_p99_ms": 1e3 * pct(gaps, 99),
        "failed": len(results) - len(ok), "short_streams": sum(1 for r in ok if r.tokens < n_tokens),
        "errors": sorted({r.error for r in results if r.error})[:3],
    }


# edgellama's /metrics counters read per round: name in the row -> metric
ENGINE_METRICS = {"steps": "batch_steps_total", "rows": "batch_rows_total", "seconds": "batch_seconds_total",
                  # prompt tokens reused from the slot's own KV cache, and copied from another slot's
                  "prompt_cached": "prompt_tokens_cached_total", "prompt_shared": "prompt_tokens_shared_total"}


def engine_counters(url: str) -> Optional[Dict[str, float]]:
    """edgellama's batch-engine counters from /metrics (forward passes, rows, seconds in them, prompt
    tokens reused); None for a server without them (the prompt ones may be missing: older servers)."""
    try:
        text = httpx.get(url + "/metrics", timeout=10).text
    except Exception:  # noqa: BLE001 - other servers may have no /metrics
        return None
    got = {}
    for key, metric in ENGINE_METRICS.items():
        for line in text.splitlines():
            if line.startswith(f"edgellama_{metric} "):
                got[key] = float(line.split()[-1])
    return got if {"steps", "rows", "seconds"} <= got.keys() else None


def bench_target(name: str, url: str, levels: List[int], n_tokens: int, timeout: float,
                 distinct_prompts: bool = False) -> List[Dict[str, float]]:
    prompts = Prompts(distinct_prompts)
    asyncio.run(run_level(url, 1, 8, timeout, prompts))  # warm-up: page the weights in
    rows = []
    for c in levels:
        before = engine_counters(url)
        row = asyncio.run(run_level(url, c, n_tokens, timeout, prompts))
        after = engine_counters(url)
        row["target"] = name
        row["prompts"] = "distinct" if distinct_prompts else "identical"
        rows.append(row)
        if before and after:  # where the wall time went: forward passes vs everything else
            d = {k: after[k] - before[k] for k in after if k in before}
            row.update(engine_steps=d["steps"], engine_rows_per_step=d["rows"] / max(1.0, d["steps"]),
                       engine_ms_per_step=1e3 * d["seconds"] / max(1.0, d["steps"]),
                       engine_busy=d["seconds"] / row["wall_s"])
            if "prompt_shared" in d:
                row.update(engine_prompt_cached=d["prompt_cached"], engine_prompt_shared=d["prompt_shared"])
        print(f"{name:17s} {c:3d} clients  {row['aggregate_tok_s']:8.1f} tok/s  TTFT p50 {row['ttft_p50_ms']:7.1f} "
              f"p99 {row['ttft_p99_ms']:7.1f} ms  ITL p50 {row['itl_p50_ms']:6.1f} p99 {row['itl_p99_ms']:6.1f} ms  "
              f"failed {row['failed']} short {row['short_streams']}", flush=True)
        if "engine_steps" in row:
            print(f"{'':17s}     engine: {row['engine_steps']:.0f} forward passes, {row['engine_rows_per_step']:.2f} rows "
                  f"and {row['engine_ms_per_step']:.1f} ms each, {100 * row['engine_busy']:.0f}% of the wall time",
                  flush=True)
        if "engine_prompt_shared" in row:
            print(f"{'':17s}     prompt tokens reused: {row['engine_prompt_cached']:.0f} from the slot's own cache, "
                  f"{row['engine_prompt_shared']:.0f} copied from another slot's", flush=True)
    return rows


def paired_scaling(rows: List[Dict[str, float]]) -> str:
    """Each round's aggregate throughput over the 1-client round run just before it, per client count
    (median and every pair when a level was repeated, e.g. --clients 1,4,1,4,1,4). The host's speed
    drifts by 15-20% between minutes, so a ratio of two rounds far apart in time says little; adjacent
    pairs, repeated, do."""
    ratios: Dict[int, List[float]] = {}
    last_one: Optional[float] = None
    for r in rows:
        if r["clients"] == 1:
            last_one = r["aggregate_tok_s"] or None
        elif last_one:
            ratios.setdefault(int(r["clients"]), []).append(r["aggregate_tok_s"] / last_one)
    parts = []
    for c in sorted(ratios):
        v = ratios[c]
        parts.append(f"{c}: {statistics.median(v):.2f}x" + (f" (pairs {', '.join(f'{x:.2f}' for x in v)})" if len(v) > 1 else ""))
    return ", ".join(parts)


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model", nargs="?", help="GGUF file (needed unless --url; with --url, read for its EOS id)")
    ap.add_argument("--target", action="append", choices=["edgellama", "llama-server", "llama-cpp-python"],
                    help="server(s) to launch and measure (repeatable; default: edgellama)")
    ap.add_argument("--url", help="measure an already running server instead (e.g. http://127.0.0.1:8080)")
    ap.add_argument("--llama-server", default="/work/llamacpp/build-native/bin/llama-server")
    ap.add_argument("--clients", default="1,2,4,8",
                    help="concurrency levels in order, repeatable: 1,4,1,4,1,4 gives three 4-vs-1 pairs (default: %(default)s)")
    ap.add_argument("-n", "--tokens", type=int, default=128, help="tokens per request (default: %(default)s)")
    ap.add_argument("--temperature", type=float, default=0.0,
                    help="sampling temperature of every request (default: 0, greedy); above 0 each request "
                         "carries its own seed (1, 2, ... in order)")
    ap.add_argument("-t", "--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("-c", "--ctx", type=int, default=512, help="context per slot (default: %(default)s)")
    ap.add_argument("--timeout", type=float, default=600.0, help="per-request timeout in seconds")
    ap.add_argument("--distinct-prompts", action="store_true",
                    help="a different prompt of the same length for every request (no shared prefix); "
                         "default: the same prompt for all")
    ap.add_argument("--json", help="write the rows to this file")
    args = ap.parse_args(argv)
    levels = [int(x) for x in args.clients.split(",") if x.strip()]
    if not levels or min(levels) <= 0:
        ap.error("--clients must list positive integers")
    rows: List[Dict[str, float]] = []
    LOGIT_BIAS.update(end_token_bias(args.model))
    global TEMPERATURE
    TEMPERATURE = args.temperature
    if args.url:
        rows += bench_target("url", args.url.rstrip("/"), levels, args.tokens, args.timeout, args.distinct_prompts)
    else:
        if not args.model:
            ap.error("MODEL is required unless --url is given")
        for target in args.target or ["edgellama"]:
            port = free_port()
            url = f"http://127.0.0.1:{port}"
            cmd = launch_command(target, args.model, port, max(levels), args.ctx, args.threads, args.llama_server)
            server = Launched(cmd, url)
            try:
                rows += bench_target(target, url, levels, args.tokens, args.timeout, args.distinct_prompts)
            finally:
                server.stop()
    for target in sorted({r["target"] for r in rows}):
        line = paired_scaling([r for r in rows if r["target"] == target])
        if line:
            print(f"{target}: aggregate throughput vs 1 client: {line}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"model": args.model, "threads": args.threads, "tokens": args.tokens,
                       "prompts": "distinct" if args.distinct_prompts else "identical", "rows": rows}, f, indent=1)
    return 1 if any(r["failed"] or r["short_streams"] for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
