"""What `vrfam-rt edit` costs per photo beyond the engine's own edit, in one run.

Runs `vrfam-rt edit` on 1 + N copies of a photo (`--batch 1`, so every photo is one
encoder + transformer + generator call, as in bench) and takes the CLI's time per photo
in its steady state from the outputs themselves: the median gap between consecutive
photos' files being written (each gap holds decoding, face detection and alignment, the
three stages, paste-back and writing the file; process start, imports, opening the
backend and the first call's compile come before the first file). `vrfam-rt bench` at
batch 1 in the same run gives the engine's edit (p50 of its iterations). Rounds
alternate the two so that drift in load hits them alike; the median round is reported.

    python scripts/edit_overhead.py --config ffhq-1024 --backend openvino --precision int8 \\
        --photo grace_hopper.jpg --photos 8 --rounds 2 --json out.json

Prints a table; `--json` writes every timing. Needs the cache made once (the first
`edit` or `bench` of a config exports, and for int8 calibrates, into it).
"""
from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CLI = [sys.executable, "-m", "vrfam_rt"]


def timed(args: list[str]) -> float:
    start = time.perf_counter()
    done = subprocess.run(CLI + args, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"vrfam-rt {' '.join(args)} failed:\n{done.stderr[-2000:]}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default="ffhq-1024")
    parser.add_argument("--backend", default="openvino")
    parser.add_argument("--precision", default="int8")
    parser.add_argument("--photo", type=Path, required=True, help="a photo with one face")
    parser.add_argument("--photos", type=int, default=8, help="N: the photos beyond the first")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--bench-iters", type=int, default=3)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="vrfam-overhead-"))
    many = work / "many"
    many.mkdir()
    for i in range(1 + args.photos):
        shutil.copy(args.photo, many / f"photo{i:03d}{args.photo.suffix}")
    model = ["--config", args.config, "--backend", args.backend, "--precision", args.precision]
    edit = ["edit", "--attr", "Smiling", "--batch", "1", "--overwrite", *model]
    rounds = []
    for r in range(args.rounds):
        report = work / f"bench{r}.json"
        timed(["bench", *model, "--batch", "1", "--iters", str(args.bench_iters),
               "--warmup", "1", "--json", str(report)])
        rows = json.loads(report.read_text())["runs"]
        engine = next(row["p50_ms"] for row in rows if row["backend"] == args.backend
                      and row["stage"] == "total") / 1e3
        out = work / f"out{r}"
        t_many = timed([*edit, str(many), "--out", str(out)])
        written = sorted(p.stat().st_mtime for p in out.iterdir())
        gaps = [b - a for a, b in zip(written, written[1:])]
        per_photo = statistics.median(gaps)
        rounds.append({"engine_s": engine, "edit_s": t_many, "gaps_s": gaps,
                       "edit_per_photo_s": per_photo, "ratio": per_photo / engine})
        print(f"round {r + 1}: bench edit {engine:.2f} s, edit per photo {per_photo:.2f} s "
              f"({per_photo / engine:.2f}x)", file=sys.stderr)
    median = sorted(rounds, key=lambda row: row["ratio"])[len(rounds) // 2]
    print(f"{'config':<10} {'backend':<9} {'precision':<9} {'bench edit s':>12} "
          f"{'edit/photo s':>12} {'ratio':>6}")
    print(f"{args.config:<10} {args.backend:<9} {args.precision:<9} {median['engine_s']:>12.2f} "
          f"{median['edit_per_photo_s']:>12.2f} {median['ratio']:>6.2f}")
    if args.json:
        from vrfam_rt.environment import cpu_model

        args.json.write_text(json.dumps({
            "command": " ".join(sys.argv), "cpu": cpu_model(), "photos": args.photos,
            "rounds": rounds, "median_ratio": median["ratio"],
            "ratio_spread": [min(r["ratio"] for r in rounds), max(r["ratio"] for r in rounds)]}, indent=1))
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
