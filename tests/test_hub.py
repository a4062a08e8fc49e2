"""The Hub-ready `custom_generate` folder (`python -m ecmh.hub export DIR`), loaded by transformers offline from the
local folder as a user loads it from the Hub: the same output as `ecmh.generate` for the same seed."""

import subprocess
import sys

import pytest
import torch

import ecmh
from conftest import EOS, PAD, tiny_model

OPTIONS = dict(alpha=2.0, mcmc_steps=2, max_new_tokens=6, block_size=3, seed=0, eos_token_id=EOS, pad_token_id=PAD)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    directory = tmp_path_factory.mktemp("hub")
    done = subprocess.run([sys.executable, "-m", "ecmh.hub", "export", str(directory)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return directory


def test_the_folder_has_the_entry_the_pinned_requirement_and_the_card(folder):
    assert "from ecmh.hub import generate" in (folder / "custom_generate" / "generate.py").read_text()
    assert (folder / "custom_generate" / "requirements.txt").read_text() == f"ecmh=={ecmh.__version__}\n"
    card = (folder / "README.md").read_text()
    assert "custom_generate" in card and "2510.14901" in card and "2605.30327" in card


def test_transformers_loads_the_folder_and_samples_what_ecmh_samples(folder):
    model = tiny_model(vocab_size=6, sharpness=4.0)
    ids = torch.tensor([[0, 1, 3], [1, 4, 4]])
    through_hub = model.generate(ids, custom_generate=str(folder), trust_remote_code=True, **OPTIONS)
    assert torch.equal(through_hub, ecmh.generate(model, ids, **OPTIONS))
    with pytest.raises(ValueError, match="`streamer` is not supported"):
        model.generate(ids, custom_generate=str(folder), trust_remote_code=True, streamer=object(), **OPTIONS)


def test_a_model_folder_that_carries_it_samples_with_ecmh_by_default(folder, tmp_path):
    from transformers import AutoModelForCausalLM

    from ecmh import hub

    model = tiny_model(vocab_size=6, sharpness=4.0)
    model.save_pretrained(tmp_path)
    hub.export(tmp_path)
    loaded = AutoModelForCausalLM.from_pretrained(tmp_path, trust_remote_code=True)
    ids = torch.tensor([[0, 1, 3]])
    assert torch.equal(loaded.generate(ids, **OPTIONS), ecmh.generate(model, ids, **OPTIONS))
    assert torch.equal(loaded.generate(input_ids=ids, **OPTIONS), ecmh.generate(model, ids, **OPTIONS))
