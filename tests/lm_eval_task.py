"""A local lm-evaluation-harness task for the tests: arithmetic questions in a JSONL file and the task's YAML."""

import json
from pathlib import Path


def write_arithmetic_task(folder: Path, name: str, questions, generation: dict) -> Path:
    """Write task `name` (exact match on `Q: What is <question>?\\nA:`) into `folder`, with `generation` as its
    `generation_kwargs`; returns the folder (lm-eval's `include_path`)."""
    data = folder / "arithmetic.jsonl"
    data.write_text("".join(json.dumps({"question": q, "answer": a}) + "\n" for q, a in questions))
    (folder / f"{name}.yaml").write_text(f"""
task: {name}
dataset_path: json
dataset_kwargs:
  data_files:
    test: {data}
test_split: test
output_type: generate_until
doc_to_text: "Q: What is {{{{question}}}}?\\nA:"
doc_to_target: "{{{{answer}}}}"
generation_kwargs: {json.dumps(generation)}
metric_list:
  - metric: exact_match
    aggregation: mean
    higher_is_better: true
metadata:
  version: 1.0
""")
    return folder
