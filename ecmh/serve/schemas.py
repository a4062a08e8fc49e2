"""The request bodies of `/v1/completions` and `/v1/chat/completions` as pydantic models. OpenAI's fields mean what they
mean there; the samplers' options (`algorithm`, `alpha`, `mcmc_steps`, `particles`, ...) are fields too, read from
the options tables (`ecmh.algorithms`, `ecmh.options.specs`) when the models are built, none retyped here.

A field the server does not know is refused, as the OpenAI API does ("Unrecognized request argument"); vLLM
ignores such fields with a warning, which would let a misspelt sampler option pass unnoticed. OpenAI's fields that
would change the target (`logprobs`, `presence_penalty`, `logit_bias`, ...) are accepted at their neutral value
only, and those that do not touch the answer (`store`, `metadata`, ...) are ignored."""

import difflib
from typing import Any, Optional, Union

import pydantic
from pydantic import ConfigDict, Field

from .. import algorithms
from ..checks import check_seed
from ..model_defaults import UNSUPPORTED
from .errors import APIError

# OpenAI's fields that would change the sampled answers, each with the values that leave them unchanged
NEUTRAL_ONLY = {
    "logprobs": (None, False, 0), "top_logprobs": (None, 0), "echo": (None, False), "best_of": (None, 1),
    "presence_penalty": (None, 0), "frequency_penalty": (None, 0), "logit_bias": (None, {}), "suffix": (None, ""),
    "response_format": (None, {"type": "text"}), "tools": (None, []), "tool_choice": (None, "none", "auto"),
    "functions": (None, []), "function_call": (None, "none", "auto"),
}
IGNORED = ("store", "metadata", "service_tier", "parallel_tool_calls", "prompt_cache_key", "safety_identifier")


class StreamOptions(pydantic.BaseModel):
    include_usage: bool = False


class OpenAIFields(pydantic.BaseModel):
    """The fields both endpoints share (`extra="allow"`: unknown ones are sorted out by `check_unknown`)."""

    model_config = ConfigDict(extra="allow")

    model: Optional[str] = None
    max_tokens: Optional[int] = Field(None, ge=1)
    n: int = Field(1, ge=1)
    stop: Union[str, list[str], None] = None
    seed: Optional[int] = None
    temperature: Optional[float] = Field(None, ge=0)
    top_p: Optional[float] = Field(None, gt=0, le=1)
    top_k: Optional[int] = Field(None, ge=-1)  # vLLM's extension: -1 or 0 is no truncation
    user: Optional[str] = None
    stream: bool = False
    stream_options: Optional[StreamOptions] = None

    @pydantic.field_validator("seed")
    @classmethod
    def _seed(cls, seed):
        return None if seed is None else check_seed("seed", seed)

    @pydantic.field_validator("stop")
    @classmethod
    def _stop_strings(cls, stop):
        strings = [stop] if isinstance(stop, str) else stop or []
        if not all(strings):
            raise ValueError("stop strings must not be empty: leave `stop` out or give non-empty strings")
        return strings


def _sampler_fields() -> dict:
    """`algorithm` and every registered algorithm's options, each once, typed as its options table declares."""
    fields = {"algorithm": (Optional[str], Field(None, description="the sampler: " + ", ".join(algorithms.REGISTRY)))}
    for spec, _ in algorithms.option_specs():
        fields[spec.name] = (Optional[spec.type], Field(None, description=spec.help))
    return fields


class ChatMessage(pydantic.BaseModel):
    model_config = ConfigDict(extra="ignore")  # `name`, `tool_calls`, ...: the chat template reads role and content

    role: str
    content: Any = None

    @pydantic.field_validator("content")
    @classmethod
    def _text(cls, content) -> str:
        """A string, or OpenAI's list of text parts joined."""
        if content is None or isinstance(content, str):
            return content or ""
        if isinstance(content, list) and all(isinstance(part, dict) and part.get("type") == "text"
                                             and isinstance(part.get("text"), str) for part in content):
            return "".join(part["text"] for part in content)
        raise ValueError('must be a string or a list of text parts ({"type": "text", "text": ...}): images, audio '
                         "and files are not supported")


def check_unknown(request) -> None:
    """Refuse the fields `request` does not declare, but for OpenAI's at their neutral value and those `IGNORED`."""
    declared = set(type(request).model_fields)
    for name, value in (request.model_extra or {}).items():
        if name in IGNORED or (name in NEUTRAL_ONLY and value in NEUTRAL_ONLY[name]):
            continue
        if name in NEUTRAL_ONLY:
            raise APIError(f"`{name}={value!r}` is not supported: it would change the sampled answers, which ecmh "
                           "draws from p^alpha; leave it out.", param=name, code="unsupported_parameter")
        why = f" ({UNSUPPORTED[name]})" if name in UNSUPPORTED else ""
        close = difflib.get_close_matches(name, declared, n=1)
        fix = f"did you mean `{close[0]}`?" if close else "leave it out (docs/serve.md lists the fields)."
        raise APIError(f"Unrecognized request argument supplied: `{name}`{why}; {fix}", param=name,
                       code="unknown_parameter")


def request_models() -> tuple[type, type]:
    """(CompletionRequest, ChatCompletionRequest), with the options of every algorithm registered by now."""
    sampler = _sampler_fields()
    completion = pydantic.create_model("CompletionRequest", __base__=OpenAIFields, prompt=(Any, ...), **sampler)
    chat = pydantic.create_model("ChatCompletionRequest", __base__=OpenAIFields, messages=(list[ChatMessage], ...),
                                 max_completion_tokens=(Optional[int], Field(None, ge=1)), **sampler)
    return completion, chat


def prompt_texts(request) -> list[str]:
    """The completion request's prompts (`prompt`: a string or a list of strings)."""
    texts = [request.prompt] if isinstance(request.prompt, str) else request.prompt
    if not isinstance(texts, list) or not texts or not all(isinstance(text, str) for text in texts):
        raise APIError(f"`prompt` must be a string or a non-empty list of strings, got {request.prompt!r:.80}: token "
                       "ids are not accepted, send the text.", param="prompt")
    if not all(text.strip() for text in texts):
        raise APIError('`prompt` is empty: ask something, e.g. "What is 17 * 23?".', param="prompt")
    return texts


def chat_messages(request) -> list[dict]:
    """The chat request's messages as the chat template reads them."""
    messages = [{"role": message.role, "content": message.content} for message in request.messages]
    if not any(message["content"].strip() for message in messages):
        raise APIError('`messages` is empty: send at least one message with content, e.g. '
                       '[{"role": "user", "content": "What is 17 * 23?"}].', param="messages")
    return messages
