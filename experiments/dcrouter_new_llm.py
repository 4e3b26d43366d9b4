"""DESIGN.md's new-LLM protocol on dcrouter: now a thin wrapper around the benchmark runner.

    python experiments/dcrouter_new_llm.py [--store .graphrouter/graph.db] [any other evaluate.py option]

is ``python experiments/evaluate.py --dataset dcrouter [--store …] new-llm`` with every one of the 9 LLMs withheld in
turn and the nemotron+qwen pair, k ∈ {0, 5, 20, 50}, random and designed probes, on the official split. Writes
experiments/results/dcrouter_new_llm.{md,json}.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from experiments.evaluate import main  # noqa: E402

DCROUTER_LLMS = (
    "llama-3.1-nemotron-51b-instruct",
    "qwen2.5-7b-instruct",
    "llama-3.1-nemotron-51b-instruct,qwen2.5-7b-instruct",
    "llama-3.3-nemotron-super-49b-v1",
    "llama3-chatqa-1.5-70b",
    "llama3-chatqa-1.5-8b",
    "gemma-2-9b-it",
    "llama-3.1-8b-instruct",
    "codegemma-7b",
    "mistral-7b-instruct-v0.3",
)

if __name__ == "__main__":
    if {"-h", "--help"} & set(sys.argv[1:]):
        print(__doc__.strip())
        print("\nevaluate.py's options (this wrapper gives --dataset, new-llm and the --withhold sets itself):\n")
        main(["--help"])
    withhold = [arg for name in DCROUTER_LLMS for arg in ("--withhold", name)]
    main(["--dataset", "dcrouter", *sys.argv[1:], "new-llm", *withhold])
