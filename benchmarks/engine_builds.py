"""TensorRT-RTX build cost per component: seconds, peak resident memory and plan size.

Each plan is built in a fresh process (so its peak RSS is its own), for each list of
target compute capabilities, from one or more export folders (fp16, int8-trt):

    python -m vrfam_rt.benchmarks.engine_builds --onnx onnx/fp16 --onnx q/int8-trt \
        --targets 7.5 --targets 7.5,8.0,8.6,8.9,12.0 --json engines.json --md engines.md
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from vrfam_rt.fileio import write_json_atomic, write_text_atomic
from vrfam_rt.tables import render

CHILD = """
import sys
from pathlib import Path
from vrfam_rt.engines.build import build_engines, rtx_target
onnx_dir, out, component, targets = sys.argv[1:5]
build_engines(Path(onnx_dir), Path(out), target=rtx_target(targets.split(",")),
              components=(component,))
"""


def build_one(onnx_dir: Path, component: str, targets: tuple[str, ...]) -> dict:
    """Build one plan in a child process; its wall seconds, peak RSS and plan size."""
    with tempfile.TemporaryDirectory() as out:
        start = time.perf_counter()
        child = subprocess.Popen([sys.executable, "-c", CHILD, str(onnx_dir), out, component,
                                  ",".join(targets)], stderr=subprocess.PIPE)
        _, status, usage = os.wait4(child.pid, 0)
        seconds = time.perf_counter() - start
        error = child.stderr.read().decode()[-2000:]
        child.stderr.close()
        if os.waitstatus_to_exitcode(status) != 0:
            raise SystemExit(f"building {component} from {onnx_dir} failed:\n{error}")
        manifest = json.loads((Path(out) / "manifest.json").read_text())
    entry = manifest["files"][component]
    return {"component": component, "precision": manifest["precision"],
            "onnx": str(onnx_dir), "targets": list(targets),
            "tensorrt_rtx": manifest["version"], "wall_s": round(seconds, 2),
            "build_s": entry["build_seconds"], "peak_rss_gib": round(usage.ru_maxrss / 2**20, 2),
            "plan_mb": round(entry["bytes"] / 1e6, 1)}


COLUMNS = (("component", "component", ""), ("precision", "precision", ""),
           ("targets (sm)", "targets_text", ""), ("build s", "build_s", ""),
           ("process wall s", "wall_s", ""), ("peak RSS GiB", "peak_rss_gib", ""),
           ("plan MB", "plan_mb", ""))


def markdown(rows: list[dict]) -> str:
    rows = [r | {"targets_text": ", ".join(r["targets"])} for r in rows]
    return render(rows, COLUMNS, markdown=True) + "\n"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--onnx", action="append", required=True, type=Path,
                        help="an export precision folder (repeatable)")
    parser.add_argument("--targets", action="append", required=True,
                        help="comma-separated compute capabilities (repeatable)")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--md", type=Path)
    args = parser.parse_args(argv)
    rows = []
    for folder in args.onnx:
        components = json.loads((folder / "manifest.json").read_text())["files"]
        for targets in args.targets:
            for component in components:
                rows.append(build_one(folder, component, tuple(targets.split(","))))
                print(markdown(rows[-1:]).splitlines()[-1], flush=True)
    table = markdown(rows)
    print(table)
    record = {"machine": {"cpu": platform.processor() or platform.machine(),
                          "cores": os.cpu_count()}, "rows": rows}
    if args.json:
        write_json_atomic(args.json, record)
    if args.md:
        write_text_atomic(args.md, table)


if __name__ == "__main__":
    main()
