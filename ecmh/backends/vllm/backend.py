"""`VLLMBackend`: ECMH's decoding on a `vllm.LLM` built by `load_vllm`.

Each `step` sends every row whose proposal is starting to the engine in ONE `llm.generate` call:
the row's prompt plus its kept prefix `y_<m` go in as token ids (never re-decoded text), with prefix
caching on so the engine reuses the KV blocks it already holds for them, and the proposal
`y'_{>=m}` comes back finished (at EOS or the block's cap): all rows of a step finish together.
The per-token numbers come from the engine's logits processor (`processor.py`, `channel.py`).

Where an answer ends is `ecmh.terminal.Terminal`'s rule, as on every backend. EOS ids go to vLLM as
stop tokens. vLLM's own `stop` sees only the text a request generates, not the kept prefix it was
given as prompt, so it would miss a stop string that straddles the cut: the backend cuts each
returned proposal at its first terminal event with `Terminal.first_end` over the whole answer, and
passes the stop strings to vLLM's `stop` only to end requests early (when the engine has its tokenizer). Where vLLM stops at a stop string that the tokens do
not hold (its detokenizer's text can differ from the tokens' bytes), the proposal is decoded on.
"""

from typing import Optional

import torch

from ...kernel import Suffix
from ...scoring import PowerProposal
from ...settings import ModelDefaults
from ...terminal import Terminal
from ..base import NAN_LOGITS
from . import channel, engine


class VLLMBackend:
    """Runs ECMH's decoding on a `vllm.LLM` built by `ecmh.load_vllm` (see `ecmh.backends.base.Backend`).

    `tokens_forwarded` counts per request the prompt tokens the engine actually computed (prompt +
    kept prefix, less its prefix-cache hits) plus the tokens decoded.
    """

    def __init__(self, llm):
        if not engine.is_ready(llm):
            raise ValueError(engine.NOT_LOADED)
        self.llm = llm
        model_config = llm.llm_engine.model_config
        if model_config.get_vocab_size() < channel.LOGPROBS:
            raise ValueError(f"ecmh's vLLM backend needs a vocabulary of at least {channel.LOGPROBS} tokens.")
        self.device = torch.device("cpu")  # where ecmh's own state lives; the engine keeps its tensors
        self.context_length = model_config.max_model_len
        generation = model_config.try_get_generation_config()  # the model's generation_config.json, a dict
        self.defaults = ModelDefaults.read(
            lambda name: generation.get(name) if generation.get(name) is not None
            else getattr(model_config.hf_text_config, name, None) if name in ("eos_token_id", "pad_token_id") else None)
        self.vocab_size = model_config.get_vocab_size()
        self.tokenizer = None if model_config.skip_tokenizer_init else llm.get_tokenizer()

    def close(self) -> None:
        self.requests = []

    def prepare(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, *, proposal: PowerProposal,
                terminal: Terminal) -> torch.Tensor:
        """Keep the prompts without their padding; the engine encodes them with the first proposals (0 forwarded)."""
        rows, max_new_tokens = input_ids.shape[0], terminal.max_new_tokens
        self.proposal, self.terminal = proposal, terminal
        self._engine_stops = terminal.stop_strings is not None and self.tokenizer is not None  # needs its detokenizer
        self.prompts = [row[keep].tolist() for row, keep in zip(input_ids.cpu(), attention_mask.bool().cpu())]
        self.requests: list[Optional[list[int]]] = [None] * rows  # per row: the prompt of its starting proposal
        self.buffer = Suffix.empty(rows, max_new_tokens, self.device)
        self.start_at, self.cap = torch.zeros(rows, dtype=torch.long), torch.zeros(rows, dtype=torch.long)
        return torch.zeros(rows, dtype=torch.long, device=input_ids.device)

    def start(self, starting: torch.Tensor, start: torch.Tensor, cap: torch.Tensor, answer: torch.Tensor) -> None:
        starting = starting.cpu()
        self.start_at = torch.where(starting, start.cpu(), self.start_at)
        self.cap = torch.where(starting, cap.cpu(), self.cap)
        answer = answer.cpu()
        for row in starting.nonzero().squeeze(1).tolist():
            self.requests[row] = self.prompts[row] + answer[row, : self.start_at[row]].tolist()

    def _request(self, row: int, seed: int, decoded: list[int], engine_stops: bool):
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt

        p = self.proposal
        params = SamplingParams(
            n=1, temperature=0.0, max_tokens=int(self.cap[row] - self.start_at[row]) - len(decoded), ignore_eos=True,
            stop_token_ids=list(self.terminal.eos_token_ids), logprobs=channel.LOGPROBS, skip_special_tokens=False,
            stop=list(self.terminal.stop_strings.stop_strings) if engine_stops else None, detokenize=engine_stops,
            extra_args={channel.EXTRA_ARGS_KEY: channel.request_spec(p.alpha, p.top_k, p.top_p, seed)},
        )
        return TokensPrompt(prompt_token_ids=self.requests[row] + decoded), params

    def step(self, rng: torch.Generator) -> Optional[tuple[torch.Tensor, Suffix]]:
        rows = [row for row, request in enumerate(self.requests) if request is not None]
        if not rows:
            return None
        finished = torch.zeros(len(self.requests), dtype=torch.bool)
        finished[rows] = True
        decoded = {row: ([], []) for row in rows}  # per row: token ids, their [log p, log Z, H]
        forwarded = self.buffer.forwarded.clone()
        forwarded[rows] = 0
        engine_stops = self._engine_stops
        while rows:
            seeds = torch.randint(0, 2**62, (len(rows),), generator=rng, device=rng.device).tolist()
            prompts, params = zip(*(self._request(row, seed, decoded[row][0], engine_stops) for row, seed in zip(rows, seeds)))
            outputs = self.llm.generate(list(prompts), list(params), use_tqdm=False)
            unfinished = []
            for row, prompt, output in zip(rows, prompts, outputs):
                completion, (ids, numbers) = output.outputs[0], decoded[row]
                ids += completion.token_ids
                numbers += [channel.decode(t, lp) for t, lp in zip(completion.token_ids, completion.logprobs)]
                forwarded[row] += len(prompt["prompt_token_ids"]) - (output.num_cached_tokens or 0) + len(completion.token_ids)
                if self.terminal.stop_strings is not None and not self._cut_at_terminal_event(row, ids, numbers):
                    if isinstance(completion.stop_reason, str) and len(ids) < self.cap[row] - self.start_at[row]:
                        # vLLM's detokenizer saw a stop string the tokens do not hold (after a kept prefix that ends
                        # inside a character it can emit prompt text again): decode on, without vLLM's `stop`
                        unfinished.append(row)
            rows, engine_stops = unfinished, False
        tokens, log_p, log_z, entropy, length, _ = (x.clone() for x in self.buffer)
        for row, (ids, numbers) in decoded.items():
            values = torch.tensor(numbers, dtype=torch.float32).reshape(len(ids), channel.SLOTS)
            if torch.isnan(values).any():
                raise ValueError(NAN_LOGITS)
            tokens[row, : len(ids)] = torch.tensor(ids, dtype=torch.long)
            log_p[row, : len(ids)], log_z[row, : len(ids)], entropy[row, : len(ids)] = values.unbind(1)
            length[row] = len(ids)
        self.buffer = Suffix(tokens, log_p, log_z, entropy, length, forwarded)
        self.requests = [None] * len(self.requests)
        return finished, self.buffer

    def _cut_at_terminal_event(self, row: int, ids: list[int], numbers: list) -> bool:
        """Cut the proposal after the token that ends its answer (`Terminal.first_end`); False if none does."""
        kept = self.requests[row][len(self.prompts[row]):]
        end = self.terminal.first_end(kept + ids, start=len(kept))
        if end is None:
            return False
        del ids[end - len(kept) + 1 :], numbers[end - len(kept) + 1 :]
        return True

    def commit(self, accepted: torch.Tensor, start: torch.Tensor) -> None:
        """Nothing to do: the engine's prefix cache follows the prompts it is sent (`start` reads the answer)."""

    def select_rows(self, keep: torch.Tensor) -> None:
        keep = keep.cpu()
        self.prompts = [self.prompts[row] for row in keep.tolist()]
        self.requests = [self.requests[row] for row in keep.tolist()]
        self.start_at, self.cap = self.start_at[keep], self.cap[keep]
        self.buffer = Suffix(*(x[keep] for x in self.buffer))
