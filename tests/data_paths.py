"""Where the real routing data lives for tests: ``../shared/data/LLMRouter`` beside the checkout, or
``$GRAPHROUTER_DATA_DIR``."""

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DCROUTER_DIR = Path(os.environ.get("GRAPHROUTER_DATA_DIR", ROOT.parent / "shared" / "data" / "LLMRouter"))
