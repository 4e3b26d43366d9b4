"""Where graphrouter keeps its files by default (one place; no heavy imports, so settings and the CLI can read it)."""

from __future__ import annotations

from pathlib import Path

DEFAULT_DIR = Path(".graphrouter")
DEFAULT_CHECKPOINT = DEFAULT_DIR / "checkpoint.pt"
