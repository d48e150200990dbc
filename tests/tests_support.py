"""Constants shared by test modules (importable because pytest puts tests/ on sys.path)."""

from __future__ import annotations

import sys
from pathlib import Path

SKUPPER = str(Path(sys.executable).parent / "skupper")
