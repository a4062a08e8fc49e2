"""The model a server holds (`Engine`): loaded once, prompts encoded, and a batch of jobs of one group sampled in one
call of `ecmh.generate`, its rows handed back as choices. Only the batcher's worker thread calls `sample`, so the
model is never entered from two threads; the tokenizer is shared with the request handlers under a lock."""

import dataclasses
import threading
from typing import NamedTuple, Optional

import ecmh

from .. import backends
from ..models import DEFAULT_MODEL
from ..stopping import text_before_stop_string
from .errors import APIError
from .jobs import PER_ROW_SEEDS, Job

BACKENDS = ("transformers", "vllm")


class Choice(NamedTuple):
    text: str
    finish_reason: str  # "stop" (EOS or a stop string) or "length" (the cap)
    tokens: int  # the continuation's tokens, its last (EOS, or the one completing a stop string) included
    stats: dict  # the answer's `out.stats` (`ecmh.Stats.row`): log_p, tokens_decoded, ..., and MH's acceptance_rate, ...


class Answer(NamedTuple):
    """One job's answers: `n` choices per prompt, prompt by prompt."""

    choices: list
    prompt_tokens: int
    batch_rows: int  # the rows of the call the job shared


class Engine:
    """A loaded model with its tokenizer, named `name` in the API."""

    def __init__(self, name: str, model, tokenizer):
        self.name, self.model, self.tokenizer = name, model, tokenizer
        backend = backends.for_model(model)
        self.context_length = backend.context_length
        self.eos_token_ids = set(backend.defaults.eos_token_ids)
        backend.close()
        self.tokenizer_lock = threading.Lock()

    @classmethod
    def load(cls, model: str = DEFAULT_MODEL, backend: str = "transformers", *, device: Optional[str] = None,
             dtype: Optional[str] = None, tensor_parallel_size: int = 1) -> "Engine":
        if backend not in BACKENDS:
            raise ValueError(f"`backend` must be one of {', '.join(BACKENDS)}, got {backend!r}.")
        if backend == "vllm":
            llm = ecmh.load_vllm(model, tensor_parallel_size=tensor_parallel_size, **({"dtype": dtype} if dtype else {}))
            return cls(model, llm, llm.get_tokenizer())
        return cls(model, *ecmh.load_model(model, dtype=dtype, device=device))

    def encode_text(self, texts: list) -> list:
        with self.tokenizer_lock:
            return [self.tokenizer(text).input_ids for text in texts]

    def encode_chat(self, messages: list) -> list:
        if not getattr(self.tokenizer, "chat_template", None):
            raise APIError(f"{self.name} has no chat template: send the prompt to /v1/completions.", param="messages")
        with self.tokenizer_lock:
            try:
                text = self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
            except Exception as error:  # the template's own refusal (roles out of order, ...), in its words
                raise APIError(f"`messages`: the chat template of {self.name} refused them: {error}",
                               param="messages") from None
            return [self.tokenizer(text, add_special_tokens=False).input_ids]

    def sample(self, jobs: list) -> list:
        """One `Answer` per job; the jobs share one group (`Job.group`)."""
        first: Job = jobs[0]
        prompts = [list(prompt) for job in jobs for prompt in job.prompts]
        per_row = isinstance(first.options, PER_ROW_SEEDS)
        seed = [job.seed for job in jobs for _ in job.prompts] if per_row else first.seed
        options = {field.name: getattr(first.options, field.name) for field in dataclasses.fields(first.options)}
        out = ecmh.generate(self.model, prompts, algorithm=first.algorithm, **options, max_new_tokens=first.max_tokens,
                            stop_strings=list(first.stop) or None, tokenizer=self.tokenizer, top_p=first.top_p,
                            top_k=first.top_k, num_return_sequences=first.n, seed=seed, return_dict_in_generate=True)
        width = max(len(prompt) for prompt in prompts)
        rows = [self._choice(out, row, width, first) for row in range(len(prompts) * first.n)]
        answers, start = [], 0
        for job in jobs:
            answers.append(Answer(rows[start:start + job.rows], sum(len(p) for p in job.prompts), len(rows)))
            start += job.rows
        return answers

    def _choice(self, out, row: int, width: int, job: Job) -> Choice:
        length = int(out.trace.length[row])
        tokens = out.sequences[row, width:width + length].tolist()
        with self.tokenizer_lock:
            text = self.tokenizer.decode(tokens, skip_special_tokens=True)
        stopped = (length < job.max_tokens or (tokens and tokens[-1] in self.eos_token_ids)
                   or any(stop in text for stop in job.stop))
        return Choice(text_before_stop_string(text, job.stop), "stop" if stopped else "length", length,
                      out.stats.row(row))
