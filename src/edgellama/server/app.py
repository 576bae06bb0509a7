"""The OpenAI-compatible HTTP API (Starlette + sse-starlette) over a :class:`BatchEngine`.

Endpoints: /v1/models, /v1/completions, /v1/chat/completions (``stream: true`` as server-sent
events ending with ``data: [DONE]``), /v1/embeddings, /health, /metrics. Errors use OpenAI's shape
``{"error": {"message", "type", "param", "code"}}``: 400 bad request, 401 bad API key, 404 unknown
route, 413 body too large, 422 body fails the schema, 503 queue full; bad input is never a 500.

Each request runs the ordinary completion code (edgellama.generation) in a worker thread on a
:class:`SlotModel`; the worker blocks in the engine while the event loop serves other clients.
"""

from __future__ import annotations

import asyncio
import hmac
import inspect
import json
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, AsyncIterator, Callable, Dict, Optional, Set

from pydantic import BaseModel, ValidationError
from sse_starlette.sse import EventSourceResponse
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from ..generation import GenerationMixin
from .engine import BatchEngine, RequestCancelled
from .metrics import Metrics
from .schemas import ChatRequest, CompletionRequest, EmbeddingRequest
from .slot_model import SlotModel

__all__ = ["ServerConfig", "create_app"]

log = logging.getLogger("edgellama.server")

# Fields that go to the generation layer only if its methods take them (the grammar/tool-calling
# work adds them to create_chat_completion); otherwise the request gets a 400 "not supported".
_PASS_THROUGH_IF_SUPPORTED = ("response_format", "tool_choice", "tools")


@dataclass
class ServerConfig:
    model_id: str
    n_slots: int
    max_queue: int = 64  # requests waiting for a slot beyond the n_slots running ones
    api_key: Optional[str] = None
    max_body_bytes: int = 4 << 20
    log_prompts: bool = False
    embedding: bool = False
    cors_origins: tuple = ()
    # speculative decoding per request: "auto" = prompt lookup when the prompt is long enough to
    # hold candidates (same output; the verify loop backs off when drafts fail), "lookup", "none"
    draft: str = "auto"
    draft_max: int = 10


class ApiError(Exception):
    def __init__(self, status: int, message: str, type_: str = "invalid_request_error",
                 param: Optional[str] = None, code: Optional[str] = None):
        super().__init__(message)
        self.status, self.message, self.type, self.param, self.code = status, message, type_, param, code


def _error_response(status: int, message: str, type_: str = "invalid_request_error", param: Optional[str] = None,
                    code: Optional[str] = None, headers: Optional[Dict[str, str]] = None) -> JSONResponse:
    return JSONResponse({"error": {"message": message, "type": type_, "param": param, "code": code}},
                        status_code=status, headers=headers)


_STATUS_TYPES = {401: "authentication_error", 404: "not_found_error", 405: "invalid_request_error",
                 413: "invalid_request_error", 501: "not_implemented_error", 503: "server_overloaded"}


class _State:
    """Everything the handlers share."""

    def __init__(self, engine: BatchEngine, vocab_llama: Any, config: ServerConfig):
        self.engine = engine
        self.vocab_llama = vocab_llama
        self.config = config
        self.metrics = Metrics()
        self.executor = ThreadPoolExecutor(max_workers=config.n_slots + config.max_queue + 2,
                                           thread_name_prefix="edgellama-request")
        self._lock = threading.Lock()
        self.in_flight = 0
        self.active: Set[SlotModel] = set()
        self.shutting_down = False
        self.embedder: Any = None  # Llama(embedding=True) when the server runs with --embedding
        self.created = int(time.time())
        # build the chat formatter once (SlotModels share its cache); a model without a template
        # fails only the chat requests, with the generation layer's message
        try:
            vocab_llama._chat_formatter()
        except Exception:  # noqa: BLE001
            pass

    def admit(self) -> None:
        with self._lock:
            if self.shutting_down:
                raise ApiError(503, "the server is shutting down", "server_overloaded")
            if self.in_flight >= self.config.n_slots + self.config.max_queue:
                self.metrics.rejected_queue_full += 1  # under self._lock
                raise ApiError(503, f"server busy: {self.config.n_slots} slots running and "
                                    f"{self.config.max_queue} requests queued; retry later", "server_overloaded")
            self.in_flight += 1

    def leave(self) -> None:
        with self._lock:
            self.in_flight -= 1

    def new_slot_model(self) -> SlotModel:
        sm = SlotModel(self.engine, self.vocab_llama, self.config.model_id, draft=self.config.draft,
                       draft_max=self.config.draft_max)
        with self._lock:
            self.active.add(sm)
        return sm

    def finish_slot_model(self, sm: SlotModel) -> None:
        sm.close()
        stats = getattr(sm.draft_model, "stats", None)
        if stats is not None:
            self.metrics.add_draft(stats.drafted, stats.accepted)
        with self._lock:
            self.active.discard(sm)

    def cancel_all(self) -> None:
        with self._lock:
            self.shutting_down = True
            active = list(self.active)
        for sm in active:
            sm.cancel()

    def gauges(self) -> Dict[str, float]:
        st = self.engine.stats()
        st["queue_depth"] = max(0, self.in_flight - st["busy_slots"])
        return st


# ---------------------------------------------------------------------------------------------
# request plumbing
# ---------------------------------------------------------------------------------------------


def _check_auth(state: _State, request: Request) -> None:
    key = state.config.api_key
    if not key:
        return
    got = request.headers.get("authorization", "")
    scheme, _, token = got.partition(" ")
    # constant-time comparison of bytes (hmac.compare_digest), whatever the header holds
    if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), key.encode()):
        raise ApiError(401, "invalid or missing API key (send 'Authorization: Bearer KEY')",
                       "authentication_error", code="invalid_api_key")


async def _read_json(state: _State, request: Request) -> Any:
    limit = state.config.max_body_bytes
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise ApiError(413, f"request body of {declared} bytes is larger than the limit of {limit} bytes")
    body = bytearray()
    try:
        async for part in request.stream():
            body += part
            if len(body) > limit:
                raise ApiError(413, f"request body is larger than the limit of {limit} bytes")
    except ClientDisconnect:
        raise ApiError(400, "client disconnected while sending the body") from None
    try:
        return json.loads(bytes(body))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ApiError(400, f"request body is not valid JSON: {e}") from None


def _parse(model: type, data: Any) -> BaseModel:
    if not isinstance(data, dict):
        raise ApiError(400, "request body must be a JSON object")
    try:
        return model.model_validate(data)
    except ValidationError as e:
        err = e.errors()[0]
        param = ".".join(str(p) for p in err.get("loc", ())) or None
        raise ApiError(422, f"{param}: {err.get('msg')}" if param else str(err.get("msg")), param=param) from None


def _generation_kwargs(method: Callable, body: BaseModel, skip: Set[str]) -> Dict[str, Any]:
    """The fields the client set, as keyword arguments of the generation method."""
    accepted = set(inspect.signature(method).parameters)
    kw: Dict[str, Any] = {}
    for name, value in body.model_dump(exclude_unset=True).items():
        if name in skip:
            continue
        if name in _PASS_THROUGH_IF_SUPPORTED and value is not None and name not in accepted:
            # a generation layer without structured output (kept for older Llama-like models)
            raise ApiError(400, f"'{name}' is not supported by this server yet", param=name)
        if name in accepted:
            kw[name] = value
    return kw


def _bad_input(e: BaseException) -> ApiError:
    return ApiError(400, str(e) or type(e).__name__)


class _Endpoint:
    """Counts every response by endpoint and status; turns ApiError / bad input into OpenAI errors."""

    def __init__(self, state: _State, name: str, fn: Callable, public: bool = False):
        self.state, self.name, self.fn, self.public = state, name, fn, public

    async def __call__(self, request: Request) -> Response:
        try:
            if not self.public:
                _check_auth(self.state, request)
            resp = await self.fn(self.state, request)
        except ApiError as e:
            resp = _error_response(e.status, e.message, e.type, e.param, e.code)
        self.state.metrics.count_request(self.name, resp.status_code)
        return resp


# ---------------------------------------------------------------------------------------------
# generation endpoints
# ---------------------------------------------------------------------------------------------


async def _generate(state: _State, request: Request, kind: str) -> Response:
    data = await _read_json(state, request)
    body = _parse(CompletionRequest if kind == "completion" else ChatRequest, data)
    if body.n != 1:
        raise ApiError(400, f"n={body.n} is not supported (one choice per request)", param="n")
    state.admit()
    loop = asyncio.get_running_loop()
    sm = state.new_slot_model()
    worker_started = False  # from then on the worker thread owns sm and the admission (_worker)
    try:
        if kind == "completion":
            prompt = body.prompt
            if isinstance(prompt, list) and prompt and isinstance(prompt[0], str):
                if len(prompt) != 1:
                    raise ApiError(400, "a list of several prompts is not supported; send one per request",
                                   param="prompt")
                prompt = prompt[0]
            kw = _generation_kwargs(GenerationMixin.create_completion, body, {"prompt", "stream", "model", "n"})
            call = lambda stream: sm.create_completion(prompt, stream=stream, **kw)  # noqa: E731
            if state.config.log_prompts:
                log.info("completion prompt: %r", prompt)
        else:
            kw = _generation_kwargs(GenerationMixin.create_chat_completion, body,
                                    {"messages", "stream", "model", "n", "max_completion_tokens"})
            if body.max_completion_tokens is not None and "max_tokens" not in kw:
                kw["max_tokens"] = body.max_completion_tokens
            call = lambda stream: sm.create_chat_completion(body.messages, stream=stream, **kw)  # noqa: E731
            if state.config.log_prompts:
                log.info("chat messages: %r", body.messages)
        if not body.stream:
            fut = loop.run_in_executor(state.executor, _worker, state, sm, lambda: call(False))
            worker_started = True
            return JSONResponse(await _wait_result(state, sm, fut, request))
        try:
            # validation happens here, eagerly (tokenizing, template), before any slot is taken:
            # errors are 400s
            chunks = await loop.run_in_executor(state.executor, call, True)
        except (ValueError, TypeError, KeyError, OverflowError) as e:
            raise _bad_input(e) from None
        queue: asyncio.Queue = asyncio.Queue()
        put = lambda item: loop.call_soon_threadsafe(queue.put_nowait, item)  # noqa: E731
        loop.run_in_executor(state.executor, _worker, state, sm, lambda: _drive(state, sm, chunks, put))
        worker_started = True
        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        return _StreamResponse(_sse_events(sm, queue, include_usage), on_close=sm.cancel, ping=15, send_timeout=60,
                               sep="\n")
    finally:
        if not worker_started:
            state.finish_slot_model(sm)
            state.leave()


def _worker(state: _State, sm: SlotModel, fn: Callable[[], Any]) -> Any:
    """Runs a request in a worker thread. Only this thread gives the slot back (after its last
    evaluation): whatever happens to the HTTP side, a slot is never reused while still in use."""
    try:
        return fn()
    finally:
        state.finish_slot_model(sm)
        state.leave()


def _drive(state: _State, sm: SlotModel, chunks, put: Callable[[Any], None]) -> None:
    """Streaming worker: iterate the generation chunks, handing each to the event loop."""
    try:
        for c in chunks:
            put(("chunk", c))
        state.metrics.add_usage(sm.usage_dict())
        put(("end", sm.usage_dict()))
    except RequestCancelled:
        state.metrics.count_cancelled()
        put(("cancelled", None))
    except BaseException as e:  # noqa: BLE001 - reported to the client as an error event
        log.exception("generation failed")
        put(("error", e))


class _StreamResponse(EventSourceResponse):
    """An SSE response that cancels its request however it ends: normal end, client gone, or the
    server task cancelled (even before the event generator ever ran)."""

    def __init__(self, *args: Any, on_close: Callable[[], None], **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._on_close = on_close

    async def __call__(self, scope, receive, send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self._on_close()


async def _sse_events(sm: SlotModel, queue: asyncio.Queue, include_usage: bool) -> AsyncIterator[Dict[str, str]]:
    last: Optional[Dict[str, Any]] = None
    try:
        while True:
            kind, item = await queue.get()
            if kind == "chunk":
                if include_usage:
                    item["usage"] = None
                last = item
                yield {"data": json.dumps(item, ensure_ascii=False)}
            elif kind == "end":
                if include_usage and last is not None:
                    tail = {k: last[k] for k in ("id", "object", "created", "model")}
                    tail.update(choices=[], usage=item)
                    yield {"data": json.dumps(tail)}
                yield {"data": "[DONE]"}
                return
            elif kind == "error":
                yield {"data": json.dumps({"error": {"message": f"generation failed: {item}", "type": "server_error",
                                                     "param": None, "code": None}})}
                return
            else:  # cancelled while the client is still there: the server is shutting down
                yield {"data": json.dumps({"error": {"message": "the server is shutting down; the completion was cut "
                                                                "short", "type": "server_overloaded", "param": None,
                                                     "code": "shutting_down"}})}
                yield {"data": "[DONE]"}
                return
    finally:
        # client gone (the generator is closed/cancelled) or the stream ended: the request stops
        # within one engine step and its worker gives the slot back
        sm.cancel()


async def _wait_result(state: _State, sm: SlotModel, fut: "asyncio.Future[Dict[str, Any]]",
                       request: Request) -> Dict[str, Any]:
    """Non-streaming: the generation layer's own stream=False call runs in a worker; cancelled if
    the client goes away meanwhile (or this handler is cancelled)."""
    try:
        while not fut.done():
            await asyncio.wait([fut], timeout=0.25)
            if not fut.done() and await request.is_disconnected():
                sm.cancel()
    finally:
        if not fut.done():
            sm.cancel()
    try:
        result = fut.result()
    except RequestCancelled:
        state.metrics.count_cancelled()
        raise ApiError(503, "request cancelled (client gone or server shutting down)", "server_overloaded") from None
    except (ValueError, TypeError, KeyError, OverflowError) as e:
        raise _bad_input(e) from None
    state.metrics.add_usage(result.get("usage") or {})
    return result


async def _completions(state: _State, request: Request) -> Response:
    return await _generate(state, request, "completion")


async def _chat(state: _State, request: Request) -> Response:
    return await _generate(state, request, "chat")


async def _embeddings(state: _State, request: Request) -> Response:
    body = _parse(EmbeddingRequest, await _read_json(state, request))
    if state.embedder is None:
        raise ApiError(501, "embeddings are off; start the server with --embedding", "not_implemented_error")
    texts = [body.input] if isinstance(body.input, str) else body.input
    if not texts or not all(isinstance(t, str) for t in texts):
        raise ApiError(400, "input must be a string or a non-empty list of strings (token-id inputs are not "
                            "supported)", param="input")
    loop = asyncio.get_running_loop()
    try:  # Llama.create_embedding: inputs batched into shared forward passes, on the request executor
        result = await loop.run_in_executor(state.executor, lambda: state.embedder.create_embedding(
            texts if isinstance(body.input, list) else body.input, model=state.config.model_id))
    except (ValueError, TypeError) as e:
        raise _bad_input(e) from None
    state.metrics.add_usage({"prompt_tokens": result["usage"]["prompt_tokens"]})
    return JSONResponse(result)


async def _models(state: _State, request: Request) -> Response:
    return JSONResponse({"object": "list", "data": [
        {"id": state.config.model_id, "object": "model", "created": state.created, "owned_by": "edgellama"}]})


async def _health(state: _State, request: Request) -> Response:
    st = state.gauges()
    return JSONResponse({"status": "ok", "slots_idle": st["n_slots"] - st["busy_slots"],
                         "slots_processing": st["busy_slots"], "queue_depth": st["queue_depth"]})


async def _metrics(state: _State, request: Request) -> Response:
    return PlainTextResponse(state.metrics.render(state.gauges), media_type="text/plain; version=0.0.4")


def create_app(engine: BatchEngine, vocab_llama: Any, config: ServerConfig, embedder: Any = None) -> Starlette:
    """``embedder``: a Llama(embedding=True) on the same file, for /v1/embeddings (None: 501)."""
    state = _State(engine, vocab_llama, config)
    state.embedder = embedder

    def route(path: str, name: str, fn: Callable, methods=("POST",), public: bool = False) -> Route:
        endpoint = _Endpoint(state, name, fn, public)

        async def handle(request: Request) -> Response:  # a function: Starlette passes it the Request
            return await endpoint(request)

        return Route(path, handle, methods=list(methods))

    routes = [
        route("/v1/completions", "completions", _completions),
        route("/v1/chat/completions", "chat_completions", _chat),
        route("/v1/embeddings", "embeddings", _embeddings),
        route("/v1/models", "models", _models, methods=("GET",)),
        route("/health", "health", _health, methods=("GET",), public=True),
        route("/metrics", "metrics", _metrics, methods=("GET",)),
    ]

    async def http_error(request: Request, exc: HTTPException) -> Response:
        msg = "not found" if exc.status_code == 404 else str(exc.detail)
        state.metrics.count_request("other", exc.status_code)
        return _error_response(exc.status_code, f"{msg}: {request.method} {request.url.path}",
                               _STATUS_TYPES.get(exc.status_code, "invalid_request_error"), headers=exc.headers)

    async def server_error(request: Request, exc: Exception) -> Response:
        log.exception("unhandled error")
        return _error_response(500, f"internal error: {type(exc).__name__}", "server_error")

    middleware = []
    if config.cors_origins:
        middleware.append(Middleware(CORSMiddleware, allow_origins=list(config.cors_origins),
                                     allow_methods=["GET", "POST", "OPTIONS"],
                                     allow_headers=["Authorization", "Content-Type"]))
    app = Starlette(routes=routes, middleware=middleware,
                    exception_handlers={HTTPException: http_error, Exception: server_error})
    app.state.edgellama = state
    return app
