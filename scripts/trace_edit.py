"""Which of our functions one `vrfam-rt edit` passes through, counted (issue 24's figure).

Runs the CLI in this process under a profiler hook and records every call into a
function defined in the vrfam_rt package (its stage folders included): how many
distinct functions ran, how many calls crossed from CLI code (vrfam_rt/cli) into
library code, and which functions ran more than once per stage. It times nothing.

    python scripts/trace_edit.py -- PHOTO --attr Smiling --backend openvino --out DIR

`--json FILE` writes the list. Run it from another checkout's root (PYTHONPATH=.) to
count an older version the same way.
"""
from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path


def trace(argv: list[str]) -> dict:
    import vrfam_rt
    from vrfam_rt.cli import main

    root = Path(vrfam_rt.__file__).resolve().parent.parent
    calls: Counter = Counter()
    crossings = 0
    layers: dict = {}

    def layer(code) -> str | None:
        """"cli", "library" or None (not ours) for a code object, cached."""
        if code not in layers:
            path = Path(code.co_filename)
            ours = path.is_absolute() and root in path.resolve().parents \
                and "/.venv/" not in str(path) and not code.co_name.startswith("<") \
                and path.resolve().relative_to(root).parts[:1] != ("tests",)
            layers[code] = None if not ours else "cli" if "/cli/" in str(path) else "library"
        return layers[code]

    def hook(frame, event, arg):
        nonlocal crossings
        if event != "call":
            return
        mine = layer(frame.f_code)
        if mine is None:
            return
        name = f"{Path(frame.f_code.co_filename).resolve().relative_to(root)}:" \
               f"{frame.f_code.co_qualname}"
        calls[name] += 1
        caller = frame.f_back
        while caller is not None and layer(caller.f_code) is None:
            caller = caller.f_back              # through click's and Python's own frames
        if caller is not None and layer(caller.f_code) == "cli" and mine == "library":
            crossings += 1

    sys.setprofile(hook)
    try:
        main.main(argv, standalone_mode=False)
    finally:
        sys.setprofile(None)
    return {"argv": argv, "functions": len(calls), "calls": sum(calls.values()),
            "cli_to_library_calls": crossings,
            "cli_functions": sum(1 for n in calls if "/cli/" in n),
            "network_functions": sum(1 for n in calls if "/models/" in n),
            "list": dict(sorted(calls.items()))}


if __name__ == "__main__":
    args = sys.argv[1:]
    out = None
    if args[:1] == ["--json"]:
        out, args = args[1], args[2:]
    if args[:1] == ["--"]:
        args = args[1:]
    result = trace(["edit", *args])
    print(f"{result['functions']} distinct functions of ours ({result['cli_functions']} in "
          f"vrfam_rt/cli, {result['network_functions']} building the networks in "
          f"vrfam_rt/models), {result['calls']} calls, {result['cli_to_library_calls']} calls "
          "from CLI code into library code", file=sys.stderr)
    if out:
        Path(out).write_text(json.dumps(result, indent=1))
