"""The same seed gives the same output as before the reshaping of issue 22 (`tests/pinned.py`)."""

import json

import pinned


def test_the_transformers_backend_draws_what_it_drew_before():
    pinned.assert_same(pinned.outputs(pinned.model()), json.loads(pinned.FILE.read_text()))


def test_a_changed_draw_fails_the_pin():
    before = json.loads(pinned.FILE.read_text())
    changed = json.loads(pinned.FILE.read_text())
    changed["entropy"]["sequences"][0][-1] += 1
    try:
        pinned.assert_same(changed, before)
    except AssertionError:
        return
    raise AssertionError("a changed token passed the pin")
