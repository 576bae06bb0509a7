"""Start the server: load the model once, build the engine and the app, run uvicorn until SIGTERM
or Ctrl-C. SIGTERM: stop accepting connections, cancel the running streams (each ends within one
engine step), stop the engine, exit 0."""

from __future__ import annotations

import ipaddress
import logging
import signal
import sys
from typing import Optional

from .. import _core
from ..llama import Llama
from .app import ServerConfig, create_app
from .engine import BatchEngine

__all__ = ["is_loopback", "serve"]


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def serve(model_path: str, *, model_id: str, host: str = "127.0.0.1", port: int = 8080, n_slots: int = 4,
          n_ctx: int = 2048, n_threads: Optional[int] = None, step_tokens: int = 256, api_key: Optional[str] = None,
          embedding: bool = False, chat_format: Optional[str] = None, cors: tuple = (), log_prompts: bool = False,
          max_queue: int = 64, max_body_bytes: int = 4 << 20, log_level: str = "info", draft: str = "auto",
          draft_max: int = 10) -> int:
    import uvicorn

    logging.basicConfig(level=getattr(logging, log_level.upper(), logging.INFO), format="%(levelname)s: %(message)s")
    if not is_loopback(host) and not api_key:
        print(f"edgellama serve: WARNING: listening on {host} without --api-key: anyone who can reach this "
              "address can use the model", file=sys.stderr)
    # the tokenizer and chat template (vocab-only: no weights), then the weights once for the engine
    vocab_llama = Llama(model_path, vocab_only=True, chat_format=chat_format)
    model = _core.Model(model_path)
    engine = BatchEngine(model, n_slots=n_slots, n_ctx=n_ctx, n_threads=n_threads or 0, step_tokens=step_tokens)
    config = ServerConfig(model_id=model_id, n_slots=n_slots, max_queue=max_queue, api_key=api_key,
                          max_body_bytes=max_body_bytes, log_prompts=log_prompts, embedding=embedding,
                          cors_origins=tuple(cors), draft=draft, draft_max=draft_max)
    # /v1/embeddings: a second context on the same file (the OS shares the mapped weights)
    embedder = Llama(model_path, embedding=True, n_ctx=n_ctx, n_threads=n_threads, verbose=False) if embedding else None
    app = create_app(engine, vocab_llama, config, embedder)
    state = app.state.edgellama

    class Server(uvicorn.Server):
        def handle_exit(self, sig: int, frame) -> None:
            super().handle_exit(sig, frame)
            state.cancel_all()  # running streams end within one engine step
            if sig == signal.SIGTERM:
                # a requested stop is a clean exit (status 0), not death by the signal that uvicorn
                # would re-raise after shutting down
                self._captured_signals = [s for s in self._captured_signals if s != signal.SIGTERM]

    # uvicorn's own access log shows method, path and status (never bodies, so never prompts)
    cfg = uvicorn.Config(app, host=host, port=port, log_level=log_level, timeout_graceful_shutdown=10,
                         lifespan="off")
    server = Server(cfg)
    print(f"edgellama serve: {model_id} on http://{host}:{port} ({n_slots} slots x {n_ctx} tokens, "
          f"{engine.ctx.n_threads} threads)", file=sys.stderr, flush=True)
    try:
        server.run()
    finally:
        state.cancel_all()
        engine.stop()
        state.executor.shutdown(wait=False, cancel_futures=True)
    return 0
