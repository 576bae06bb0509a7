"""``edgellama serve``: an OpenAI-compatible HTTP server with parallel slots batched into one
forward pass per step.

Layers, one file each:
  engine.py      BatchEngine: the thread that owns the multi-sequence context; slots, chunked
                 prefill, prefix reuse, cancellation
  slot_model.py  SlotModel: generation.py's model contract over one slot (completions and chat
                 behave exactly like Llama.create_completion)
  schemas.py     request bodies (pydantic)
  app.py         the Starlette app: endpoints, errors, auth, body limit, SSE streaming
  metrics.py     Prometheus text for /metrics
  run.py         load the model, start uvicorn, SIGTERM handling

The HTTP stack is an optional extra: ``pip install "edgellama[server]"``.
"""

from __future__ import annotations

__all__ = ["MISSING_EXTRA_HINT", "missing_server_packages"]

MISSING_EXTRA_HINT = 'pip install "edgellama[server]"'

_REQUIRED = (("starlette", "starlette"), ("uvicorn", "uvicorn"), ("sse_starlette", "sse-starlette"),
             ("pydantic", "pydantic"))


def missing_server_packages() -> list:
    """Distribution names of the server extra that cannot be imported."""
    import importlib.util

    return [dist for mod, dist in _REQUIRED if importlib.util.find_spec(mod) is None]
