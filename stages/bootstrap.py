"""Imported first by every stage script: this repository's library (``src/``) first on sys.path,
whatever is installed where. DVC runs queued and temporary experiments in copies of the
repository, each with its own ``src/``; an editable install would point them all at one."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
