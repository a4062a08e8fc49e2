"""Outputs of `ecmh.generate` pinned before the house was reshaped (issue 22): the same seed must keep giving
the same sequences and counters, bit for bit, and the same `log p` to float32 rounding, on every backend.

`python tests/pinned.py` rewrites `tests/data/pinned-transformers.json` from the current code and, with vLLM
installed, `tests/data/pinned-vllm.json` (a tiny engine on the same weights with head_dim 32): only do that on purpose, when a change is
meant to change what a seed draws, and say so in the commit.
"""

import json
from pathlib import Path

import torch

import ecmh
from conftest import EOS, PAD, tiny_model, tiny_tokenizer

PROMPTS = [[0, 1, 3], [2], [1, 1, 0, 2]]
CASES = {
    "entropy": dict(cut="entropy", mcmc_steps=3, max_new_tokens=12, block_size=4, num_return_sequences=2),
    "uniform-top-k": dict(cut="uniform", mcmc_steps=2, max_new_tokens=10, block_size=5, top_k=3),
    "restart-no-eos": dict(cut="restart", mcmc_steps=2, max_new_tokens=8, block_size=8, eos_token_id=None),
    "stop-strings": dict(cut="entropy", cut_power=1.0, mcmc_steps=2, max_new_tokens=10, block_size=5,
                         num_return_sequences=2, stop_strings=["bc", "cc"], tokenizer=tiny_tokenizer(6)),
    # block_size=1: the default block before its 16-token floor (issue 27), so the pin still holds what it held
    "proposal-only": dict(mcmc_steps=0, max_new_tokens=9, block_size=1, top_p=0.9, num_return_sequences=2),
}
FILE = Path(__file__).parent / "data" / "pinned-transformers.json"
VLLM_FILE = FILE.with_name("pinned-vllm.json")


def model(**config):
    return tiny_model(vocab_size=6, sharpness=2.0, seed=11, **config)


def outputs(engine) -> dict:
    """Per case, what the pin holds: sequences, the integer counters and `log p` per row."""
    pinned = {}
    for name, options in CASES.items():
        out = ecmh.generate(engine, PROMPTS, alpha=2.0, seed=5, pad_token_id=PAD, return_dict_in_generate=True,
                            **{"eos_token_id": EOS, **options})
        pinned[name] = {"sequences": out.sequences.tolist(), "log_p": out.stats.log_p.tolist(),
                        **{k: getattr(out.stats, k).tolist() for k in ("proposals", "accepted", "tokens_decoded",
                                                                       "tokens_forwarded")}}
    return pinned


def dumps(pinned: dict) -> str:
    return "{\n" + ",\n".join(f"{json.dumps(name)}: {json.dumps(case)}" for name, case in pinned.items()) + "\n}\n"


def assert_same(now: dict, pinned: dict, counters=("proposals", "accepted", "tokens_decoded", "tokens_forwarded")):
    assert now.keys() == pinned.keys()
    for name in pinned:
        assert now[name]["sequences"] == pinned[name]["sequences"], name
        for counter in counters:
            assert now[name][counter] == pinned[name][counter], (name, counter)
        assert torch.allclose(torch.tensor(now[name]["log_p"]), torch.tensor(pinned[name]["log_p"]), atol=1e-5), name


def vllm_engine(directory):
    """An `ecmh.load_vllm` engine on `model(**VLLM_SHAPES)` saved in `directory` (the test_vllm settings)."""
    from test_vllm import ENGINE, VLLM_SHAPES

    model(**VLLM_SHAPES).save_pretrained(directory)
    return ecmh.load_vllm(str(directory), **ENGINE)


if __name__ == "__main__":
    FILE.write_text(dumps(outputs(model())))
    print(f"wrote {FILE}")
    try:
        import vllm  # noqa: F401
    except ImportError:
        raise SystemExit(0)
    import tempfile

    engine = vllm_engine(tempfile.mkdtemp())
    VLLM_FILE.write_text(dumps(outputs(engine)))
    engine.llm_engine.engine_core.shutdown()
    print(f"wrote {VLLM_FILE}")
