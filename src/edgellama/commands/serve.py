"""`edgellama serve MODEL`: an OpenAI-compatible HTTP server (edgellama.server)."""

from __future__ import annotations

import argparse
import os

from .. import cli

NAME = "serve"
HELP = "serve a model over an OpenAI-compatible HTTP API (parallel requests batched)"
DESCRIPTION = """\
Serve MODEL over the OpenAI HTTP API: /v1/completions, /v1/chat/completions (with streaming),
/v1/models, /v1/embeddings, /health and /metrics. Up to --parallel requests run at once; their
tokens share one forward pass per step. Listens on 127.0.0.1 unless --host says otherwise.
Needs the server extra: pip install "edgellama[server]"."""
EPILOG = """\
examples:
  edgellama serve smollm2-135m-instruct --parallel 4
  edgellama serve model.gguf --host 0.0.0.0 --port 8000 --api-key "$KEY"
then: OPENAI_BASE_URL=http://127.0.0.1:8080/v1 with any OpenAI client"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    cli.add_model_argument(p)
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: %(default)s, this machine only)")
    p.add_argument("--port", type=int, default=8080, help="TCP port (default: %(default)s)")
    p.add_argument("-np", "--parallel", type=int, default=4, metavar="N",
                   help="requests served at once, each in its own slot (default: %(default)s)")
    p.add_argument("-c", "--ctx-size", type=int, default=2048, metavar="N",
                   help="context window of each slot in tokens (default: %(default)s)")
    p.add_argument("-t", "--threads", type=int, default=None, metavar="N",
                   help="CPU threads (default: the number of physical cores)")
    p.add_argument("--batch-tokens", type=int, default=256, metavar="N",
                   help="most tokens per forward pass; longer prompts are prefilled in chunks (default: %(default)s)")
    p.add_argument("--queue", type=int, default=64, metavar="N",
                   help="requests that may wait for a slot; more get 503 (default: %(default)s)")
    p.add_argument("--api-key", default=os.environ.get("EDGELLAMA_API_KEY"), metavar="KEY",
                   help="require 'Authorization: Bearer KEY' (default: $EDGELLAMA_API_KEY, else none)")
    p.add_argument("--embedding", action="store_true", help="enable /v1/embeddings")
    p.add_argument("--chat-format", default=None, metavar="NAME",
                   help="chat format for models without a template: chatml, llama-2, llama-3")
    p.add_argument("--cors", action="append", default=[], metavar="ORIGIN",
                   help="allow browser requests from ORIGIN (repeatable; default: none)")
    p.add_argument("--log-prompts", action="store_true", help="log request prompts (off by default)")
    p.add_argument("--draft", choices=["auto", "lookup", "none"], default="auto",
                   help="speculative decoding per request: prompt lookup when the prompt is long enough (auto, "
                        "the default; same output), always (lookup), or off (none)")
    p.add_argument("--draft-max", type=int, default=10, metavar="N",
                   help="at most N draft tokens per step (default: %(default)s)")
    p.add_argument("--max-body-bytes", type=int, default=4 << 20, metavar="N",
                   help="largest request body accepted, larger ones get 413 (default: %(default)s)")
    p.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"],
                   help="server log level (default: %(default)s)")


def run(args: argparse.Namespace) -> int:
    from ..server import MISSING_EXTRA_HINT, missing_server_packages

    missing = missing_server_packages()
    if missing:
        raise cli.UserError(f"`edgellama serve` needs the server extra (missing: {', '.join(missing)}); "
                            f"install it with: {MISSING_EXTRA_HINT}")
    for name, v, low in (("--parallel", args.parallel, 1), ("--ctx-size", args.ctx_size, 1),
                         ("--batch-tokens", args.batch_tokens, 1), ("--queue", args.queue, 0),
                         ("--max-body-bytes", args.max_body_bytes, 1), ("--draft-max", args.draft_max, 1)):
        if v < low:
            raise cli.UserError(f"{name} must be at least {low}, got {v}")
    if not 0 <= args.port <= 65535:
        raise cli.UserError(f"--port must be between 0 and 65535, got {args.port}")
    if args.threads is not None and args.threads <= 0:
        raise cli.UserError(f"--threads must be positive, got {args.threads}")
    from ..server.run import serve

    path = cli.resolve_model_arg(args.model)
    return serve(path, model_id=args.model, host=args.host, port=args.port, n_slots=args.parallel,
                 n_ctx=args.ctx_size, n_threads=args.threads, step_tokens=args.batch_tokens, api_key=args.api_key,
                 embedding=args.embedding, chat_format=args.chat_format, cors=tuple(args.cors),
                 log_prompts=args.log_prompts, max_queue=args.queue, max_body_bytes=args.max_body_bytes,
                 log_level=args.log_level, draft=args.draft, draft_max=args.draft_max)
