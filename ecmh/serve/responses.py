"""Answers in OpenAI's shapes: a completion or chat completion object, or its server-sent events. Each choice carries
an `ecmh` object (its `out.stats`: `log_p`, `tokens_decoded`, ..., under ECMH `acceptance_rate`), and the response an
`ecmh` object with the sampler and options used (`alpha` among them), the seed and the rows of the call it shared.

An MCMC answer is not final until its last step, so a stream sends keep-alive comments while the batch samples,
then each choice's whole text as one chunk, a usage chunk when `stream_options.include_usage` is set, and
`data: [DONE]`."""

import json
import time
import uuid

from .engine import Answer
from .jobs import Job

KEEP_ALIVE = ": sampling\n\n"  # an SSE comment: clients skip it, proxies see the connection alive


class Reply:
    """The response to one request, in its endpoint's shape (`chat`: a chat completion)."""

    def __init__(self, model: str, chat: bool):
        self.model, self.chat = model, chat
        self.id = ("chatcmpl-" if chat else "cmpl-") + uuid.uuid4().hex
        self.created = int(time.time())

    def _envelope(self, stream: bool) -> dict:
        kind = ("chat.completion.chunk" if stream else "chat.completion") if self.chat else "text_completion"
        return {"id": self.id, "object": kind, "created": self.created, "model": self.model}

    def _choice(self, index: int, choice, stream: bool) -> dict:
        body = {"index": index, "logprobs": None, "finish_reason": choice.finish_reason, "ecmh": choice.stats}
        if not self.chat:
            return {**body, "text": choice.text}
        key = "delta" if stream else "message"
        return {**body, key: {"role": "assistant", "content": choice.text}}

    @staticmethod
    def usage(answer: Answer) -> dict:
        completion = sum(choice.tokens for choice in answer.choices)
        return {"prompt_tokens": answer.prompt_tokens, "completion_tokens": completion,
                "total_tokens": answer.prompt_tokens + completion}

    @staticmethod
    def settings(answer: Answer, job: Job) -> dict:
        return {**job.sampler_settings(), "max_tokens": job.max_tokens, "batch_rows": answer.batch_rows}

    def body(self, answer: Answer, job: Job) -> dict:
        return {**self._envelope(False),
                "choices": [self._choice(i, choice, False) for i, choice in enumerate(answer.choices)],
                "usage": self.usage(answer), "ecmh": self.settings(answer, job)}

    def events(self, answer: Answer, job: Job, include_usage: bool) -> list[str]:
        """The stream's events after the keep-alive comments, `[DONE]` last."""
        chunks = [{**self._envelope(True), "choices": [self._choice(i, choice, True)], "ecmh": self.settings(answer, job)}
                  for i, choice in enumerate(answer.choices)]
        if include_usage:
            chunks.append({**self._envelope(True), "choices": [], "usage": self.usage(answer)})
        return [event(chunk) for chunk in chunks] + ["data: [DONE]\n\n"]


def event(data: dict) -> str:
    return f"data: {json.dumps(data)}\n\n"
