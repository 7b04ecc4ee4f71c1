"""Reading ONNX Runtime profiles (``create_session(..., profile_prefix=...)``) for benchmarks."""
from __future__ import annotations

import json
import os


def profile_by_op(profile_json: str | os.PathLike[str], *, skip_runs: int = 1
                  ) -> tuple[dict[str, float], int]:
    """Seconds per operator type from an ONNX Runtime profile, robust to a busy machine.

    Each node's time is its minimum over the runs in the file (the first ``skip_runs`` runs,
    warm-up, left out), so another process slowing some runs down does not count; the minima are
    then summed per operator type (``Conv`` covers ONNX Runtime's blocked NCHWc convolutions,
    ``ReorderInput``/``ReorderOutput`` its layout changes).

    Returns
    -------
    seconds : dict of str to float
        Operator type -> seconds per run, largest first.
    runs : int
        How many runs the file holds.
    """
    with open(profile_json, encoding="utf-8") as handle:
        events = json.load(handle)
    runs = sum(1 for e in events if e.get("name") == "model_run")
    durations: dict[tuple[str, str], list[float]] = {}
    for event in events:
        name = str(event.get("name", ""))
        if event.get("cat") == "Node" and name.endswith("_kernel_time"):
            key = (name, str(event.get("args", {}).get("op_name", "?")))
            durations.setdefault(key, []).append(float(event["dur"]) * 1e-6)
    seconds: dict[str, float] = {}
    for (_, op), values in durations.items():
        kept = values[skip_runs:] or values
        seconds[op] = seconds.get(op, 0.0) + min(kept)
    return dict(sorted(seconds.items(), key=lambda kv: -kv[1])), runs
