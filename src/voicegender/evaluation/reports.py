"""Writing metrics and tables in diff-friendly, byte-stable forms (figures: :mod:`voicegender.evaluation.plots`)."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path


def write_json(path: str | Path, obj) -> None:
    """Write ``obj`` as indented JSON (floats rounded to 6 significant digits, NaN as null)."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(_clean(obj), indent=2) + "\n", encoding="utf-8")


def _clean(obj):
    if isinstance(obj, float):
        return None if not math.isfinite(obj) else float(f"{obj:.6g}")
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    if hasattr(obj, "item"):  # numpy scalars
        return _clean(obj.item())
    return obj


def write_table(path: str | Path, rows: list[dict], columns: list[str] | None = None) -> None:
    """Write rows as CSV, or TSV when ``path`` ends in ``.tsv``; floats to 6 significant digits."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    columns = columns or (list(rows[0]) if rows else [])
    delimiter = "\t" if path.suffix == ".tsv" else ","
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=columns, delimiter=delimiter, lineterminator="\n", extrasaction="ignore")
        writer.writeheader()
        for r in rows:
            writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in r.items()})


def significant(x: float, digits: int = 6) -> float:
    """``x`` rounded to ``digits`` significant digits: what the tables and JSON files hold, so
    that a last-bit difference in a loss does not show up as a changed file."""
    return float(f"{x:.{digits}g}")
