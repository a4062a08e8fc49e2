"""Toy language models small enough to enumerate every continuation, for exactness checks and teaching.

`random_model` builds a tiny randomly initialised Llama (no download); `exact` enumerates every complete
continuation of a prompt (ending in EOS, or of length `max_new_tokens`) with its exact probability under
`p`, under the target `p^alpha` (normalised) and under the token-wise tempered proposal `q` that
low-temperature sampling (ECMH with `mcmc_steps=0`) draws from.
"""

import itertools
from typing import NamedTuple, Optional

import torch


def random_model(vocab_size: int = 6, sharpness: float = 3.0, seed: int = 0, **config):
    """A 2-layer Llama with `vocab_size` tokens whose output head is scaled by `sharpness`, so next-token
    distributions are peaked and varied; `config` overrides `LlamaConfig` fields. Token 2 is EOS, 3 is padding."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(**{
        "vocab_size": vocab_size, "hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 2,
        "num_attention_heads": 2, "num_key_value_heads": 1, "max_position_embeddings": 64,
        "bos_token_id": 0, "eos_token_id": 2, "pad_token_id": 3, "tie_word_embeddings": False, **config,
    })
    model = LlamaForCausalLM(config).eval()
    with torch.no_grad():
        model.lm_head.weight.mul_(sharpness)
    return model


class Exact(NamedTuple):
    continuations: list  # every complete continuation, as tuples of token ids
    p: torch.Tensor  # float64 [C]: p(y | prompt)
    target: torch.Tensor  # float64 [C]: p(y | prompt)^alpha, normalised
    proposal: torch.Tensor  # float64 [C]: the token-wise tempered proposal q(y | prompt)

    def distribution(self, answers) -> torch.Tensor:
        """The empirical distribution of `answers` (token-id sequences) over `continuations`."""
        index = {seq: i for i, seq in enumerate(self.continuations)}
        counts = torch.bincount(torch.tensor([index[tuple(a)] for a in answers]), minlength=len(self.continuations))
        return counts.double() / len(answers)


@torch.no_grad()
def exact(model, prompt: list, max_new_tokens: int, alpha: float, eos_token_id: Optional[int] = 2) -> Exact:
    """Enumerate every complete continuation of `prompt` (`vocab_size ** max_new_tokens` at most: keep both small)."""
    vocab = model.config.vocab_size
    seqs = [seq for n in range(1, max_new_tokens + 1) for seq in itertools.product(range(vocab), repeat=n)
            if (eos_token_id is None or eos_token_id not in seq[:-1])
            and (n == max_new_tokens or (eos_token_id is not None and seq[-1] == eos_token_id))]
    log_p, log_q = torch.zeros(len(seqs), dtype=torch.float64), torch.zeros(len(seqs), dtype=torch.float64)
    for n in range(1, max_new_tokens + 1):
        index = [i for i, seq in enumerate(seqs) if len(seq) == n]
        if not index:
            continue
        answers = torch.tensor([seqs[i] for i in index])
        logits = model(torch.cat([torch.tensor(prompt).expand(len(index), -1), answers], dim=1)).logits
        step_log_p = torch.log_softmax(logits[:, len(prompt) - 1 : -1].double(), -1)
        log_p[index] = step_log_p.gather(2, answers[..., None]).squeeze(2).sum(1)
        log_q[index] = torch.log_softmax(alpha * step_log_p, -1).gather(2, answers[..., None]).squeeze(2).sum(1)
    return Exact(seqs, log_p.exp(), torch.softmax(alpha * log_p, 0), log_q.exp())


def total_variation(a: torch.Tensor, b: torch.Tensor) -> float:
    return 0.5 * float((a - b).abs().sum())
