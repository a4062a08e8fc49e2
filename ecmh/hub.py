"""A Hub-ready `custom_generate` folder, transformers' own way to share a decoding method.

`python -m ecmh.hub export DIR` writes `DIR/custom_generate/generate.py` (a one-line entry that imports this
module's `generate`: all the code stays in the ecmh package), `DIR/custom_generate/requirements.txt` (the ecmh
version it was written by) and `DIR/README.md` (the card). Then, from the Hub after `huggingface-cli upload` or
from the local folder:

    model.generate(input_ids, custom_generate="DIR or org/repo", trust_remote_code=True, alpha=4.0, mcmc_steps=10)

transformers calls the entry with every argument of its own `generate` (those it does not prepare for a custom
method included); `generate` here drops the ones left unset and refuses the ones ecmh cannot honour.
"""

import argparse
import sys
from pathlib import Path

from . import __version__, algorithms
from .commandline import ArgumentParser
from .generation import generate as ecmh_generate

# `GenerationMixin.generate`'s own arguments that transformers hands to a repository's `generate` as they were given.
_TRANSFORMERS_ARGUMENTS = ("logits_processor", "stopping_criteria", "prefix_allowed_tokens_fn", "synced_gpus",
                           "assistant_model", "streamer", "negative_prompt_ids", "negative_prompt_attention_mask",
                           "use_model_defaults")

ENTRY = '''"""ECMH: sample from the power distribution p^alpha with Entropy-Cut Metropolis-Hastings (the `ecmh` package)."""

from ecmh.hub import generate  # noqa: F401  (transformers calls `generate(model=..., ...)`)
'''

CARD = """---
library_name: transformers
tags:
  - custom_generate
---

# ECMH: power sampling with Entropy-Cut Metropolis-Hastings

Samples continuations from the power distribution `p(y | prompt)^alpha` of the model (sharper than temperature
sampling, at the level of whole answers) with block-wise Metropolis-Hastings whose proposals cut where the
model's next-token entropy jumps, keeping the prefix and its KV cache. Exact: the chain's stationary law is
`p^alpha`. `algorithm="smc"` samples the same target with Sequential Monte Carlo at about plain decoding's latency.

## Example

```python
from transformers import AutoModelForCausalLM, AutoTokenizer

tokenizer = AutoTokenizer.from_pretrained("Qwen/Qwen2.5-0.5B-Instruct", padding_side="left")
model = AutoModelForCausalLM.from_pretrained("Qwen/Qwen2.5-0.5B-Instruct")
inputs = tokenizer(["What is 17 * 23?"], return_tensors="pt")
out = model.generate(**inputs, custom_generate="THIS_REPO", trust_remote_code=True,
                     alpha=4.0, mcmc_steps=10, max_new_tokens=256, seed=0)
print(tokenizer.batch_decode(out[:, inputs.input_ids.shape[1]:], skip_special_tokens=True))
```

## Arguments

{arguments}
- `seed`: the same seed gives the same output.
- As for `generate`: `max_new_tokens`, `eos_token_id`, `num_return_sequences`, `top_k`, `top_p`,
  `return_dict_in_generate`. No `top_k=50` is applied unless you ask; options that would change the target
  (`temperature`, `repetition_penalty`, ...) are refused.

Requirements: `custom_generate/requirements.txt` (the `ecmh` package, Apache-2.0).

## Citations

- Karan & Du, *Reasoning with Sampling: Your Base Model is Smarter Than You Think*, arXiv:2510.14901.
- *Entropy-Cut Metropolis-Hastings*, arXiv:2605.30327.
"""


def arguments() -> str:
    """The card's list of the samplers and their options, read from the registry and the options tables
    (`ecmh.algorithms`, `ecmh.options`): each option once, with its default, the algorithms that take it where not
    every one does, and its help."""
    samplers = "; ".join(f'"{name}": {entry.summary}' for name, entry in algorithms.REGISTRY.items())
    lines = [f'- `algorithm` ("{algorithms.DEFAULT}"): the sampler, one of {samplers}.']
    for spec, takers in algorithms.option_specs():
        only = "" if len(takers) == len(algorithms.REGISTRY) else f"; {', '.join(takers)}"
        lines.append(f"- `{spec.name}` ({spec.default!r}{only}): {spec.help}.")
    return "\n".join(lines)


def generate(inputs=None, generation_config=None, *, model, **arguments):
    """`ecmh.generate` as a repository's `custom_generate/generate.py` entry (see the module docstring). transformers
    passes `model` by keyword: through `generate(custom_generate=...)`, or bound once by `from_pretrained` when the
    model's own folder carries `custom_generate/` (then `model.generate(ids, ...)` samples with ECMH by default)."""
    for name in _TRANSFORMERS_ARGUMENTS:
        value = arguments.pop(name, None)
        if value not in (None, False, []):
            raise ValueError(f"`{name}` is not supported by ecmh's custom_generate: ECMH samples p^alpha itself; "
                             "leave it out.")
    if inputs is None:
        inputs = arguments.pop("input_ids", None)
    return ecmh_generate(model, inputs, generation_config, **arguments)


def export(directory) -> Path:
    """Write the folder (module docstring) into `directory`; returns it."""
    directory = Path(directory)
    folder = directory / "custom_generate"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "generate.py").write_text(ENTRY)
    (folder / "requirements.txt").write_text(f"ecmh=={__version__}\n")
    (directory / "README.md").write_text(CARD.replace("{arguments}", arguments()))
    return directory


def main(argv=None) -> int:
    parser = ArgumentParser(prog="python -m ecmh.hub", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    export_command = commands.add_parser("export", help="write the custom_generate folder and its card")
    export_command.add_argument("directory", help="where to write them (created if missing)")
    args = parser.parse_args(argv)
    print(export(args.directory))
    return 0


if __name__ == "__main__":
    sys.exit(main())
