"""The speed half of `benchmarks/gpu_check.sh`: ECMH's cost per decoded token against plain decoding, on
random-weight models built from real configs (nothing is downloaded), at several batch sizes.

`python -m benchmarks.gpu_check --backend transformers|vllm [--tiny]` prints one line per model and rows:
seconds per decoded token of ECMH and of plain sampling at temperature 1/alpha (`model.generate`, or the
engine's own sampling on vLLM), and their ratio. Random weights give near-uniform next-token
distributions, so no row ends early and every run decodes the same lengths: a clean timing, not a
quality measure. `--tiny` uses a small config on the CPU (what CI runs, so the script cannot rot).
"""

import argparse
import tempfile

import torch

import ecmh
from ecmh.commandline import ArgumentParser

from .timing import timed

ALPHA, MCMC_STEPS = 4.0, 2
# Qwen2.5-0.5B and Qwen2.5-7B, as their config.json files give them; "tiny" for CI (head_dim 32 for vLLM's CPU build)
CONFIGS = {
    "qwen2.5-0.5b": dict(hidden_size=896, intermediate_size=4864, num_hidden_layers=24, num_attention_heads=14,
                         num_key_value_heads=2, vocab_size=151936, tie_word_embeddings=True),
    "qwen2.5-7b": dict(hidden_size=3584, intermediate_size=18944, num_hidden_layers=28, num_attention_heads=28,
                       num_key_value_heads=4, vocab_size=152064, tie_word_embeddings=False),
    "tiny": dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=2,
                 num_key_value_heads=1, vocab_size=512, tie_word_embeddings=False),
}
PROMPT_TOKENS = 32


def build(name: str, dtype: torch.dtype, device: str):
    """A randomly initialised Qwen2 causal LM of the named config, built on `device` in `dtype`."""
    from transformers import Qwen2Config, Qwen2ForCausalLM

    config = Qwen2Config(**CONFIGS[name], max_position_embeddings=4096, eos_token_id=0, pad_token_id=0,
                         bos_token_id=None)
    torch.manual_seed(0)
    with torch.device(device):
        model = Qwen2ForCausalLM(config).to(dtype)
    return model.eval()


def prompts(rows: int, vocab_size: int) -> list[list[int]]:
    generator = torch.Generator().manual_seed(rows)
    return torch.randint(1, vocab_size, (rows, PROMPT_TOKENS), generator=generator).tolist()


def ecmh_seconds_per_token(model, ids, max_new_tokens: int, block_size: int) -> float:
    out, seconds = timed(lambda: ecmh.generate(
        model, ids, alpha=ALPHA, mcmc_steps=MCMC_STEPS, block_size=block_size, max_new_tokens=max_new_tokens,
        eos_token_id=None, seed=0, return_dict_in_generate=True))
    return seconds / out.stats.tokens_decoded.sum().item()


def plain_transformers(model, ids, max_new_tokens: int) -> float:
    tensor = torch.tensor(ids, device=model.device)
    _, seconds = timed(lambda: model.generate(tensor, attention_mask=torch.ones_like(tensor), do_sample=True,
                                              temperature=1 / ALPHA, top_k=0, max_new_tokens=max_new_tokens,
                                              min_new_tokens=max_new_tokens, pad_token_id=0))
    return seconds / (len(ids) * max_new_tokens)


def plain_vllm(llm, ids, max_new_tokens: int) -> float:
    from vllm import SamplingParams
    from vllm.inputs import TokensPrompt

    params = SamplingParams(temperature=1 / ALPHA, max_tokens=max_new_tokens, ignore_eos=True, seed=0)
    _, seconds = timed(lambda: llm.generate([TokensPrompt(prompt_token_ids=p) for p in ids], params, use_tqdm=False))
    return seconds / (len(ids) * max_new_tokens)


def main(argv=None) -> None:
    parser = ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backend", choices=("transformers", "vllm"), default="transformers",
                        help="what runs the models (default: %(default)s)")
    parser.add_argument("--tiny", action="store_true", help="a tiny config on the CPU, 1 and 2 rows (CI)")
    args = parser.parse_args(argv)
    device = "cpu" if args.tiny else "cuda"
    models = ["tiny"] if args.tiny else ["qwen2.5-0.5b", "qwen2.5-7b"]
    rows_list = [1, 2] if args.tiny else [1, 16, 64]
    max_new_tokens, block_size = (16, 4) if args.tiny else (128, 32)
    dtype = torch.float32 if args.tiny else torch.bfloat16
    print(f"backend {args.backend}, {device}, {dtype}, alpha {ALPHA}, mcmc_steps {MCMC_STEPS}, "
          f"max_new_tokens {max_new_tokens}, block_size {block_size}, prompts of {PROMPT_TOKENS} tokens")
    print(f"{'model':>14} {'rows':>5} {'ecmh ms/tok':>12} {'plain ms/tok':>13} {'ratio':>6}")
    for name in models:
        model = build(name, dtype, "cpu" if args.backend == "vllm" else device)
        if args.backend == "vllm":
            directory = tempfile.mkdtemp(prefix=f"gpu-check-{name}-")
            model.save_pretrained(directory)
            del model
            engine = ecmh.load_vllm(directory, skip_tokenizer_init=True, dtype=str(dtype).split(".")[1],
                                    max_model_len=PROMPT_TOKENS + max_new_tokens + 8,
                                    **({"enforce_eager": True, "kv_cache_memory_bytes": 256 << 20} if args.tiny else {}))
            plain = plain_vllm
        else:
            engine, plain = model, plain_transformers
        vocab_size = CONFIGS[name]["vocab_size"]
        ecmh_seconds_per_token(engine, prompts(1, vocab_size), block_size, block_size)  # warm-ups
        plain(engine, prompts(1, vocab_size), block_size)
        for rows in rows_list:
            ids = prompts(rows, vocab_size)
            ours = ecmh_seconds_per_token(engine, ids, max_new_tokens, block_size)
            theirs = plain(engine, ids, max_new_tokens)
            print(f"{name:>14} {rows:>5} {1000 * ours:>12.3f} {1000 * theirs:>13.3f} {ours / theirs:>6.2f}", flush=True)
        if args.backend == "vllm":
            engine.llm_engine.engine_core.shutdown()
        del engine
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
