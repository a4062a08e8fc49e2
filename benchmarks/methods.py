"""The kinds of sampler a benchmark compares, each turning a batch of prompts into one answer per prompt:
`Plain` (temperature 1, or the tempered proposal at 1/alpha), `MH` (block-wise MH on `p^alpha` with a cut rule),
`SMC` (Sequential Monte Carlo on `p^alpha`), `SamplerMethod` (any sampler registered in `ecmh.algorithms`, by name; `SMC`
is one) and `BestOfN` (the best of plain draws under another method's token budget). The benchmark's methods are
instances of these, registered by name in `registry.py`.

All of them run through `ecmh.generate` (plain sampling is its `mcmc_steps=0` case, which samples the tempered
proposal exactly), so every method is seeded and counted alike: decoded tokens (rejected proposals and discarded
particles included), forwarded positions and sequential forward passes (the decoding steps an answer waits for
one after another: what latency on a GPU follows).

Best-of-N returns every draw (`Answer.candidates`); `choose` picks one with an `ecmh.select` selector: the highest
mean base-model log-likelihood per token (`log_p`), the lowest High-Entropy Sum (`hes`), or the most common
extracted answer (`majority`). Its budget is the same problem's decoded tokens under the method it is matched
to; it draws as if one at a time and stops at the draw that brings its decoded tokens closest to the budget (the
draw that would cross it is kept only when it overshoots by less than stopping before it falls short), so draws
made in parallel beyond that are discarded unread.
"""

import hashlib
import math
from dataclasses import dataclass, field
from typing import ClassVar, NamedTuple, Optional, Sequence

import torch

import ecmh
from ecmh.checks import check_int
from ecmh.mh import DEFAULTS, SamplerConfig
from ecmh.selection import scores as selection_scores

SELECTORS = ("log_p", "hes", "majority")  # ecmh.select's rules that need no second model
SMC_PARTICLES = 64  # SMC methods' particles per prompt unless `--particles` says otherwise (the entropy-cut paper's)
# ECMH's options that every MH method of a run shares, declared in `ecmh.mh.SamplerConfig` (flags and help from there)
RUN_OPTIONS = ("alpha", "cut_power", "mcmc_steps", "block_size", "early_rejection", "tries")


@dataclass(frozen=True)
class RunSettings:
    """The sampling settings shared by every method of a run: ecmh's defaults and the papers' length."""

    alpha: float = DEFAULTS.alpha
    mcmc_steps: int = DEFAULTS.mcmc_steps
    block_size: Optional[int] = DEFAULTS.block_size  # None: max_new_tokens // 16, at least 16
    max_new_tokens: int = 3072
    cut_power: float = DEFAULTS.cut_power
    stop_strings: tuple = ()  # end answers there, exactly (needs the tokenizer: `Method.sample(..., tokenizer)`)
    particles: Optional[int] = None  # SMC methods' particles per prompt (None: SMC_PARTICLES)
    early_rejection: bool = DEFAULTS.early_rejection  # MH methods: exact early rejection (the same answers, fewer tokens)
    tries: int = DEFAULTS.tries  # MH methods: candidates per MH step (multiple-try ECMH)

    def __post_init__(self):  # every setting checked before any model loads
        check_int("max_new_tokens", self.max_new_tokens, 1)
        SamplerConfig(**{name: getattr(self, name) for name in RUN_OPTIONS}).block_size_for(self.max_new_tokens)
        if self.particles is not None:
            check_int("--particles", self.particles, 1)

    def config(self) -> dict:
        """What a results row records of these settings (stop strings only where there are some, and early rejection
        only where it is off, so rows made before they existed still resume; a method adds its own options:
        `Method.config`)."""
        config = {**self.__dict__, "block_size": self.resolved_block_size}
        del config["particles"]
        for name in ("early_rejection", "tries"):
            if config[name] == getattr(DEFAULTS, name):
                del config[name]
        if not self.stop_strings:
            del config["stop_strings"]
        else:
            config["stop_strings"] = list(self.stop_strings)
        return config

    @property
    def resolved_block_size(self) -> int:
        return SamplerConfig(block_size=self.block_size).block_size_for(self.max_new_tokens)


class Cost(NamedTuple):
    """What one answer (or draw) cost."""

    tokens_decoded: int  # every token sampled for it
    tokens_forwarded: int  # every position run through the model for it, the prompt's included
    sequential_passes: int  # forward passes it waited for one after another


class Draw(NamedTuple):
    tokens: list  # the continuation, up to and including its EOS or the token that completes a stop string
    cost: Cost
    log_p: float  # base-model log-likelihood
    mean_log_p: float  # ... per token
    hes: float  # High-Entropy Sum (ecmh.metrics.high_entropy_sum)


class Answer(NamedTuple):
    tokens: list  # the continuation, up to and including its EOS or the token that completes a stop string
    cost: Cost  # everything the method spent for this answer
    acceptance_rate: Optional[float]  # MH methods only
    acceptance_by_block: list  # MH methods: accepted / proposed per block (None where none proposed)
    log_p: float  # base-model log-likelihood of the answer
    candidates: list = []  # best-of-N: every draw (`Draw`), for `choose`


def choose(candidates: Sequence[Draw], selector: str, answers: Optional[Sequence[Optional[str]]] = None) -> int:
    """The index of the draw `selector` picks, by `ecmh.select`'s rules; `majority` needs each draw's extracted answer."""
    if selector not in SELECTORS:
        raise ValueError(f"Unknown selector {selector!r}: use one of {', '.join(SELECTORS)}.")
    mean_log_p = torch.tensor([d.mean_log_p for d in candidates], dtype=torch.float64)
    hes = torch.tensor([d.hes for d in candidates], dtype=torch.float64)
    return int(selection_scores(selector, len(candidates), mean_log_p, hes, answers).argmax())


def stable_seed(*parts) -> int:
    """A seed from any printable parts, the same in every process (unlike Python's salted `hash`)."""
    return int.from_bytes(hashlib.sha256(repr(parts).encode()).digest()[:7], "big")


# ---------------------------------------------------------------- the kinds of method


@dataclass(frozen=True)
class Method:
    """A benchmark method: its name, what it samples (`summary`, for the docs), and how.

    `budget_from` names the method whose decoded tokens per problem (same problem, same seed) are this one's
    budget: the runner runs that method first and hands its counts to `sample` as `budgets`."""

    name: str
    summary: str
    budget_from: Optional[str] = None
    targets_power: ClassVar[bool] = True  # whether it samples p^alpha (exactly, or in a limit of its cost)

    def config(self, settings: RunSettings) -> dict:
        """What its rows record of the settings: the run's, plus the method's own options (checked here, before
        any model loads)."""
        return settings.config()

    def sample(self, model, input_ids: torch.Tensor, attention_mask: torch.Tensor, settings: RunSettings, seed: int,
               tokenizer=None, budgets: Optional[Sequence[int]] = None) -> list[Answer]:
        """One answer per prompt row (`budgets`: one per row where `budget_from` is set; stop strings need the
        `tokenizer`)."""
        raise NotImplementedError


@dataclass(frozen=True)
class Plain(Method):
    """Plain sampling, at temperature 1, or tempered (temperature 1/alpha: the proposal MH corrects)."""

    tempered: bool = False
    targets_power: ClassVar[bool] = False

    def draw(self, model, input_ids, attention_mask, settings: RunSettings, seed: int, tokenizer) -> ecmh.Output:
        return ecmh.generate(
            model, input_ids, attention_mask=attention_mask, alpha=settings.alpha if self.tempered else 1.0,
            mcmc_steps=0, max_new_tokens=settings.max_new_tokens, seed=seed, return_dict_in_generate=True,
            **_stop_strings(settings, tokenizer))

    def sample(self, model, input_ids, attention_mask, settings, seed, tokenizer=None, budgets=None):
        out = self.draw(model, input_ids, attention_mask, settings, seed, tokenizer)
        return [Answer(d.tokens, d.cost, None, [], d.log_p) for d in draws(out, input_ids)]


@dataclass(frozen=True)
class MH(Method):
    """Block-wise MH on `p^alpha` with the cut rule `cut` (`ecmh.cuts`); `options`: ECMH options of its own that
    replace the run's (e.g. `tries` and `mcmc_steps` for multiple-try ECMH), recorded in its rows under "mh"."""

    cut: str = "entropy"
    options: dict = field(default_factory=dict)

    def config(self, settings):
        SamplerConfig(**self.options)  # checked before any model loads
        return {**settings.config(), "mh": dict(self.options)} if self.options else settings.config()

    def sample(self, model, input_ids, attention_mask, settings, seed, tokenizer=None, budgets=None):
        run_options = {name: getattr(settings, name) for name in RUN_OPTIONS if name not in ("alpha", "block_size")}
        out = ecmh.generate(
            model, input_ids, attention_mask=attention_mask, alpha=settings.alpha,
            block_size=settings.resolved_block_size, max_new_tokens=settings.max_new_tokens, cut=self.cut,
            seed=seed, record_history=True, return_dict_in_generate=True, **{**run_options, **self.options},
            **_stop_strings(settings, tokenizer))
        blocks = -(-settings.max_new_tokens // settings.resolved_block_size)
        by_block = ecmh.diagnostics.acceptance_by_block(out.history, input_ids.shape[0], blocks).tolist()
        rates = out.stats.acceptance_rate.tolist()
        return [Answer(d.tokens, d.cost, None if math.isnan(rate) else rate,
                       [None if math.isnan(value) else value for value in row], d.log_p)
                for d, rate, row in zip(draws(out, input_ids), rates, by_block)]


@dataclass(frozen=True)
class SamplerMethod(Method):
    """Any sampler of `ecmh.algorithms`, by name (`algorithm`), with `options`: its options besides `alpha` (the
    run's). A sampler registered there becomes a benchmark method with one `registry.register` line; its rows
    record the options under the sampler's name."""

    algorithm: str = ecmh.algorithms.DEFAULT
    options: dict = field(default_factory=dict)

    def algorithm_options(self, settings: RunSettings) -> dict:
        return dict(self.options)

    def config(self, settings):
        options = self.algorithm_options(settings)
        given = {"alpha": settings.alpha, **options}
        ecmh.algorithms.options_for(self.algorithm, given)  # checked before any model loads
        if given:
            raise ValueError(f"{self.name}: {', '.join(sorted(given))} not an option of algorithm={self.algorithm!r}.")
        return {**settings.config(), self.algorithm: options}

    def sample(self, model, input_ids, attention_mask, settings, seed, tokenizer=None, budgets=None):
        out = ecmh.generate(
            model, input_ids, attention_mask=attention_mask, alpha=settings.alpha, algorithm=self.algorithm,
            max_new_tokens=settings.max_new_tokens, seed=seed, return_dict_in_generate=True,
            **self.algorithm_options(settings), **_stop_strings(settings, tokenizer))
        return [Answer(d.tokens, d.cost, None, [], d.log_p) for d in draws(out, input_ids)]


@dataclass(frozen=True)
class SMC(SamplerMethod):
    """Sequential Monte Carlo on `p^alpha`: `options` are `ecmh.generate`'s SMC options besides `particles` (the
    run's `--particles`, else `SMC_PARTICLES`) and `bridge_tokens` (`bridge_fraction` of `max_new_tokens`)."""

    algorithm: str = "smc"
    bridge_fraction: float = 0.0

    def algorithm_options(self, settings: RunSettings) -> dict:
        particles = SMC_PARTICLES if settings.particles is None else settings.particles
        cut_power = {"cut_power": settings.cut_power} if "cut" in self.options else {}  # moves cut as the run's MH does
        return dict(particles=particles, bridge_tokens=round(self.bridge_fraction * settings.max_new_tokens),
                    **self.options, **cut_power)


@dataclass(frozen=True)
class BestOfN(Method):
    """Plain draws (`draws_from`) until each row's decoded tokens come closest to its budget, every draw kept as a
    candidate and the best by `log_p` answered (`choose` records what each selector picks)."""

    draws_from: Plain = None
    targets_power: ClassVar[bool] = False

    def sample(self, model, input_ids, attention_mask, settings, seed, tokenizer=None, budgets=None):
        if budgets is None or len(budgets) != input_ids.shape[0]:
            raise ValueError(f"{self.name} needs one decoded-token budget per prompt (the same problem's "
                             f"{self.budget_from} run).")
        return _best_of_n(self.draws_from.draw, model, input_ids, attention_mask, settings, seed, budgets, tokenizer)


def _stop_strings(settings: RunSettings, tokenizer) -> dict:
    return dict(stop_strings=list(settings.stop_strings), tokenizer=tokenizer) if settings.stop_strings else {}


def draws(out: ecmh.Output, input_ids: torch.Tensor):
    """A `Draw` per row of an output."""
    continuations = out.sequences[:, input_ids.shape[1]:].tolist()
    stats = out.stats
    costs = zip(stats.tokens_decoded.tolist(), stats.tokens_forwarded.tolist(), stats.sequential_passes.tolist())
    columns = (out.trace.length, stats.log_p, ecmh.metrics.mean_log_likelihood(out.trace),
               ecmh.metrics.high_entropy_sum(out.trace))
    for tokens, cost, (length, *numbers) in zip(continuations, costs, zip(*(c.tolist() for c in columns))):
        yield Draw(tokens[:length], Cost(*cost), *numbers)


def _best_of_n(draw_plain, model, input_ids, attention_mask, settings, seed, budgets, tokenizer) -> list[Answer]:
    rows = input_ids.shape[0]
    spent, closed = [0] * rows, [False] * rows
    forwarded, passes = [0] * rows, [0] * rows
    drawn: list[list[Draw]] = [[] for _ in range(rows)]
    mean_length = [float(settings.max_new_tokens)] * rows  # first round: one draw per row, no waste
    round_index = 0
    while not all(closed):
        counts = [0 if closed[r] else max(1, math.ceil((budgets[r] - spent[r]) / mean_length[r])) for r in range(rows)]
        source = torch.tensor([r for r, count in enumerate(counts) for _ in range(count)], device=input_ids.device)
        out = draw_plain(model, input_ids[source], attention_mask[source], settings, stable_seed(seed, round_index),
                         tokenizer)
        longest = [0] * rows  # a round's draws of one row run in parallel: it waits for the longest
        for r, draw in zip(source.tolist(), draws(out, input_ids[source])):
            forwarded[r] += draw.cost.tokens_forwarded
            longest[r] = max(longest[r], draw.cost.sequential_passes)
            if closed[r]:
                continue  # drawn in parallel after the row's last draw: discarded unread
            over, under = spent[r] + draw.cost.tokens_decoded - budgets[r], budgets[r] - spent[r]
            if drawn[r] and over > under:  # stopping before this draw is closer to the budget
                closed[r] = True
                continue
            spent[r] += draw.cost.tokens_decoded
            drawn[r].append(draw)
            closed[r] = spent[r] >= budgets[r]
        passes = [p + n for p, n in zip(passes, longest)]
        mean_length = [max(1.0, spent[r] / len(drawn[r])) for r in range(rows)]
        round_index += 1
    answers = []
    for r, candidates in enumerate(drawn):
        best = candidates[choose(candidates, "log_p")]
        answers.append(Answer(best.tokens, Cost(spent[r], forwarded[r], passes[r]), None, [], best.log_p, candidates))
    return answers
