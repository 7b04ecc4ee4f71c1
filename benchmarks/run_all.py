"""Run every benchmark in turn with its defaults (``make bench``); each prints its own table.

    python benchmarks/run_all.py [--quick]

``--quick`` runs the component benchmarks only (VGG-19, PatchMatch, WLS, sub-pixel alignment: a
few minutes on two cores); without it the whole-pipeline stage tables at 224 and 448 px, the
known-answer analogies and the 12 and 24 MP outputs above the working size run too (about an
hour on two CPU cores).
"""
from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).parent
COMPONENTS = ["vgg.py", "patchmatch.py", "wls.py", "subpixel.py"]
WHOLE = ["pipeline.py", "known_answer.py", "highres.py"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="component benchmarks only")
    args = parser.parse_args()
    failed = []
    for script in COMPONENTS + ([] if args.quick else WHOLE):
        print(f"\n== {script}", flush=True)
        if subprocess.run([sys.executable, str(HERE / script)]).returncode != 0:
            failed.append(script)
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
