"""Request bodies of the OpenAI endpoints, as pydantic models (validation errors become 422s).

Only the fields a client *set* are passed on (``model_dump(exclude_unset=True)``), so an omitted
sampling parameter takes :meth:`edgellama.Llama.create_completion`'s default: a request to the
server and the same call on a ``Llama`` give the same result.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Union

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["CompletionRequest", "ChatRequest", "EmbeddingRequest", "StreamOptions"]

Stop = Union[str, List[str], None]


class _Request(BaseModel):
    # unknown fields (user, service_tier, ...) are accepted and ignored, as OpenAI-compatible
    # servers do; the ones we know are type-checked
    model_config = ConfigDict(extra="ignore")


class StreamOptions(_Request):
    include_usage: bool = False


class _Sampling(_Request):
    model: Optional[str] = None
    max_tokens: Optional[int] = None
    temperature: Optional[float] = None
    top_p: Optional[float] = None
    top_k: Optional[int] = None
    min_p: Optional[float] = None
    typical_p: Optional[float] = None
    repeat_penalty: Optional[float] = None
    presence_penalty: Optional[float] = None
    frequency_penalty: Optional[float] = None
    stop: Stop = None
    seed: Optional[int] = None
    logit_bias: Optional[Dict[str, float]] = None
    stream: bool = False
    stream_options: Optional[StreamOptions] = None
    n: int = 1


class CompletionRequest(_Sampling):
    prompt: Union[str, List[int], List[str]]
    suffix: Optional[str] = None
    logprobs: Optional[int] = Field(default=None, ge=0, le=20)
    echo: bool = False


class ChatRequest(_Sampling):
    messages: List[Dict[str, Any]] = Field(min_length=1)
    max_completion_tokens: Optional[int] = None
    logprobs: Optional[bool] = None
    top_logprobs: Optional[int] = Field(default=None, ge=0, le=20)
    # passed to the generation layer when it supports them (else 400, see app.py)
    tools: Optional[List[Dict[str, Any]]] = None
    tool_choice: Optional[Union[str, Dict[str, Any]]] = None
    response_format: Optional[Dict[str, Any]] = None


class EmbeddingRequest(_Request):
    model: Optional[str] = None
    input: Union[str, List[str], List[int], List[List[int]]]
    encoding_format: Optional[str] = None
