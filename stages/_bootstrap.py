"""Imported first by every stage: the library is imported from the repository the stage runs in.

DVC runs queued and temporary experiments (`dvc exp run --queue`, `--temp`) in copies of the
repository; a package installed in editable mode would import from the folder it was installed
from, i.e. another version of the code than the experiment's. Putting `<this repository>/src`
first on sys.path, and on PYTHONPATH for the processes the stage starts (Ray's trial workers,
feature workers), makes each run use its own src/.
"""

import os
import sys
from pathlib import Path

SRC = str(Path(__file__).resolve().parents[1] / "src")
if sys.path[:1] != [SRC]:
    sys.path.insert(0, SRC)
os.environ["PYTHONPATH"] = os.pathsep.join([SRC] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep)
                                                   if p and p != SRC])
