"""ecmh as a model type of EleutherAI's lm-evaluation-harness (`pip install 'ecmh[lm-eval]'`).

Importing this module registers the model type `ecmh` (lm-eval 0.4.x has no plugin entry points for
models). From Python, `import ecmh.harness` before `lm_eval.simple_evaluate(model="ecmh", ...)`; on the
command line, `python -m ecmh.harness` is lm-eval's own CLI with `ecmh` registered:

    python -m ecmh.harness run --model ecmh --model_args pretrained=smollm2-135m-instruct,alpha=4,mcmc_steps=4 \\
        --tasks gsm8k --apply_chat_template --log_samples --output_path results/

`generate_until` requests are sampled by `ecmh.generate`, a batch of contexts of different lengths
left-padded together; the task's `until` strings are exact stop strings (`ecmh.stopping`: a
continuation ends at the first one, inside the chain) and the response is the text before it, as
lm-eval expects. `max_gen_toks` caps the answer; `algorithm` picks the sampler (any of `ecmh.algorithms`, an
installed package's `ecmh.samplers` entry points included; `ecmh.algorithms.DEFAULT` unless given), and its options
(those of its options dataclass, `ecmh.options`: `alpha`, `mcmc_steps`, `particles`, ...) come from `--model_args`
and may be overridden per task in `generation_kwargs`. The task's greedy or temperature settings (`do_sample`,
`temperature`, `top_k`, `top_p`) are not used: ecmh samples `p^alpha`. Each response's acceptance rate, MH
proposals, decoded tokens and `log p` are added to its request's generation arguments under `"ecmh"` (a list, one
record per response), which lm-eval's `--log_samples` writes out.

`loglikelihood` and `loglikelihood_rolling` are properties of the base model, not of the sampler: they
are delegated to lm-eval's own Hugging Face model (`HFLM`) on the same weights, so they equal
`--model hf` at the same settings.
"""

import json
import logging
import os
import subprocess
from contextlib import contextmanager
from typing import Optional

import torch
from lm_eval.api.model import LM
from lm_eval.api.registry import register_model
from lm_eval.models.huggingface import HFLM

import ecmh
from ecmh import algorithms
from ecmh.checks import SEED_LIMIT, check_seed
from ecmh.models import DEFAULT_MODEL
from ecmh.options import specs
from ecmh.stopping import text_before_stop_string

_NOT_USED = ("do_sample", "temperature", "top_k", "top_p")  # ECMH samples p^alpha, whatever the task's decoding


@register_model("ecmh")
class ECMHLM(LM):
    """lm-eval's `LM` interface over `ecmh.generate` (see the module docstring).

    Args (`--model_args`): `pretrained` (an embedded name, hub id or local path), `algorithm` (a registered sampler)
    and its options (`alpha`, `mcmc_steps`, `particles`, ...: its options dataclass, `ecmh.algorithms`),
    `max_gen_toks` (default answer cap when a task sets none), `seed` (base seed; each batch's seed derives from
    it), `dtype`. lm-eval's own `--batch_size` (contexts per sampler call; "auto" means 8) and `--device` apply.
    """

    def __init__(self, pretrained: str = DEFAULT_MODEL, algorithm: str = algorithms.DEFAULT, batch_size: int = 8,
                 max_gen_toks: int = 256, seed: int = 0, dtype: Optional[str] = None, device: Optional[str] = None,
                 max_batch_size: Optional[int] = None, **options):
        super().__init__()
        batch_size = 8 if str(batch_size).startswith("auto") else batch_size
        if device is not None and str(device).startswith("cuda") and not torch.cuda.is_available():
            device = None  # lm-eval's default --device; ecmh picks the device itself, as lm-eval's own hf model does
        seed = int(seed) if isinstance(seed, str) and seed.lstrip("-").isdigit() else seed  # lm-eval keeps "-1" text
        check_seed("seed", seed)
        self.algorithm = algorithm
        self.sampler = algorithms.options_for(algorithm, self._typed(options))
        if options:
            raise ValueError(f"--model_args: {', '.join(sorted(options))} not known to ecmh (algorithm={algorithm!r}).")
        self.model, self.tokenizer = ecmh.load_model(pretrained, dtype=dtype, device=device)
        self.batch_size, self.max_gen_toks, self.seed = int(batch_size), int(max_gen_toks), seed
        with _without_log_line("lm_eval.models.huggingface", "`pretrained` model kwarg is not of type `str`"):
            # HFLM warns that a model object makes it ignore its loading arguments: ecmh loaded the model itself
            self.hf = HFLM(pretrained=self.model, tokenizer=self.tokenizer, batch_size=self.batch_size)

    def loglikelihood(self, requests, disable_tqdm: bool = False):
        return self.hf.loglikelihood(requests, disable_tqdm=disable_tqdm)

    def loglikelihood_rolling(self, requests, disable_tqdm: bool = False):
        return self.hf.loglikelihood_rolling(requests, disable_tqdm=disable_tqdm)

    def apply_chat_template(self, chat_history, add_generation_prompt: bool = True) -> str:
        return self.hf.apply_chat_template(chat_history, add_generation_prompt)

    @property
    def tokenizer_name(self) -> str:
        return self.hf.tokenizer_name

    def chat_template(self, chat_template=False):
        return self.hf.chat_template(chat_template)

    def _typed(self, options: dict) -> dict:
        """`options` (popped) as the types their options dataclass declares: lm-eval hands `--model_args` over as
        strings or numbers ("None" for None)."""
        kinds = {spec.name: spec.type for spec in specs(algorithms.get(self.algorithm).options)}
        typed = {}
        for name in [name for name in options if name in kinds]:
            value = options.pop(name)
            if value in (None, "None") or kinds[name] is not bool or isinstance(value, bool):
                typed[name] = value if value in (None, "None") or isinstance(value, kinds[name]) else kinds[name](value)
            else:
                typed[name] = str(value).lower() in ("1", "true", "yes")
        return {name: None if value == "None" else value for name, value in typed.items()}

    def _settings(self, gen_kwargs: dict) -> tuple[dict, list, int]:
        """(sampler options, stop strings, max new tokens) of one request's generation arguments."""
        own = {spec.name for spec in specs(type(self.sampler))}
        options = {**{name: getattr(self.sampler, name) for name in own},
                   **{k: gen_kwargs[k] for k in own if k in gen_kwargs}}
        unknown = set(gen_kwargs) - own - set(_NOT_USED) - {"until", "max_gen_toks", "ecmh"}
        if unknown:
            raise ValueError(f"ecmh does not know the generation argument(s) {sorted(unknown)} of this task.")
        until = gen_kwargs.get("until") or []
        return options, [until] if isinstance(until, str) else list(until), int(gen_kwargs.get("max_gen_toks", self.max_gen_toks))

    def generate_until(self, requests, disable_tqdm: bool = False) -> list[str]:
        groups: dict[str, list[int]] = {}
        for index, request in enumerate(requests):
            key = json.dumps(self._settings({k: v for k, v in request.args[1].items() if k != "ecmh"}), sort_keys=True)
            groups.setdefault(key, []).append(index)
        responses: list[Optional[str]] = [None] * len(requests)
        for batch_index, (key, indices) in enumerate((k, i[s:s + self.batch_size]) for k, i in groups.items()
                                                     for s in range(0, len(i), self.batch_size)):
            options, until, max_new_tokens = json.loads(key)
            ids, mask = self.hf.tok_batch_encode([requests[i].args[0] for i in indices])
            out = ecmh.generate(
                self.model, ids.to(self.model.device), attention_mask=mask.to(self.model.device),
                algorithm=self.algorithm, **options,
                max_new_tokens=max_new_tokens, stop_strings=until or None, tokenizer=self.tokenizer,
                seed=(self.seed + batch_index) % SEED_LIMIT, return_dict_in_generate=True,
            )
            for row, i in enumerate(indices):
                n = int(out.trace.length[row])
                text = self.tokenizer.decode(out.sequences[row, ids.shape[1]:ids.shape[1] + n], skip_special_tokens=True)
                responses[i] = text_before_stop_string(text, until)
                requests[i].args[1].setdefault("ecmh", []).append(out.stats.row(row))
        return responses


@contextmanager
def _without_log_line(logger: str, start: str):
    """Drop the records of `logger` whose message starts with `start` while the block runs."""
    def keep(record):
        return not record.getMessage().startswith(start)

    logging.getLogger(logger).addFilter(keep)
    try:
        yield
    finally:
        logging.getLogger(logger).removeFilter(keep)


def _git_hash_quietly() -> Optional[str]:
    """lm-eval's `get_git_commit_hash`, without git's "fatal: not a git repository" on stderr outside one."""
    from lm_eval.loggers.utils import get_commit_from_path

    try:
        return subprocess.check_output(["git", "describe", "--always"], stderr=subprocess.DEVNULL).strip().decode()
    except (subprocess.CalledProcessError, FileNotFoundError):
        return get_commit_from_path(os.getcwd())


if __name__ == "__main__":
    import lm_eval.__main__
    import lm_eval.evaluator

    lm_eval.evaluator.get_git_commit_hash = _git_hash_quietly
    lm_eval.__main__.cli_evaluate()
