"""Small helpers shared by the evaluations and benchmarks: JSON-safe numbers, Markdown tables, files.

Results are plain dicts; a method that could not run is ``{"available": False, "reason": ...}``
and renders as one "unavailable" line in a table instead of a row of numbers.
"""

from __future__ import annotations

import json
import math
import os
import platform
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any


def clean_number(value: Any) -> Any:
    """A float made JSON-safe: NaN becomes ``None`` and infinities the strings ``"inf"`` / ``"-inf"``."""
    if isinstance(value, float):
        if math.isnan(value):
            return None
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
    return value


def json_safe(data: Any) -> Any:
    """Recursively apply `clean_number` (JSON has no NaN or infinity)."""
    if isinstance(data, Mapping):
        return {str(k): json_safe(v) for k, v in data.items()}
    if isinstance(data, (list, tuple)):
        return [json_safe(v) for v in data]
    return clean_number(data)


def write_json(data: Mapping[str, Any], path: str | os.PathLike) -> Path:
    """Write `data` as indented, standard JSON (creating the parent folder)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(json_safe(data), indent=1, allow_nan=False) + "\n")
    return path


def write_text(text: str, path: str | os.PathLike) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def fmt(value: Any, digits: int = 3) -> str:
    """A table cell: numbers with `digits` decimals, None as an en dash, booleans as yes/no."""
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "–"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return f"{value:.{digits}f}"
    return str(value)


def markdown_table(rows: Mapping[str, Mapping[str, Any]], columns: Sequence[tuple[str, str, int]],
                   first: str = "method") -> str:
    """A Markdown table with one line per entry of `rows`.

    Args:
        rows: name -> metrics; an entry with ``"available": False`` is rendered as its reason.
        columns: ``(key, header, decimals)`` of each metric column.
        first: header of the name column.
    """
    header = f"| {first} | " + " | ".join(h for _, h, _ in columns) + " |"
    rule = "|:---|" + "|".join("---:" for _ in columns) + "|"
    lines = [header, rule]
    for name, row in rows.items():
        if not row.get("available", True):
            reason = " ".join(str(row.get("reason", "unavailable")).split()).replace("|", "/")
            cells = [f"unavailable: {reason}"] + [""] * (len(columns) - 1)
        else:
            cells = [fmt(row.get(key), digits) for key, _, digits in columns]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def machine_info() -> dict[str, Any]:
    """CPU model, core count, Python and torch versions and torch threads (for the record)."""
    import torch

    cpu = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info: dict[str, Any] = {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(),
                            "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
                            "platform": platform.platform()}
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info
