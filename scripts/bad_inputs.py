"""Try bad inputs as a new user would, through the installed `vrfam-rt` and the Python API,
and tally how each is met: a clean error (at most 3 lines, the policy's exit code, no
traceback) with every planted file intact, or not.

    python scripts/bad_inputs.py [--json tally.json]

Runs in a fresh temporary folder holding a user's files (a folder with a text file and a
photo, a regular file), with its own VRFAM_RT_CACHE. The cases are data below; each says
the exit code the policy gives it (2 usage, 1 failed input or step).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "vrfam_rt" / "assets" / "default" / "faces" / "example.png"
USAGE, FAILED = 2, 1

# (what the user typed after `vrfam-rt`, the exit code the policy gives it)
CLI_CASES = [
    ("edit", USAGE),
    ("edit photo.png", USAGE),
    ("edit nothing.png --attr Smiling", FAILED),
    ("edit notes.txt --attr Smiling", FAILED),
    ("edit empty.png --attr Smiling --no-align", FAILED),
    ("edit photo.png --attr Beard", USAGE),
    ("edit photo.png --attr Smiling=2", USAGE),
    ("edit photo.png --attr Smiling=nan", USAGE),
    ("edit photo.png --attr Smiling=inf", USAGE),
    ("edit photo.png --attr Smiling=abc", USAGE),
    ("edit photo.png --attr =1", USAGE),
    ("edit photo.png --attr Smiling --alpha-sweep 1:2", USAGE),
    ("edit photo.png --attr Smiling --alpha-sweep 0:0:5", USAGE),
    ("edit photo.png --attr Smiling=1 --alpha-sweep -1:1:3", USAGE),
    ("edit photo.png --attr Smiling --backend tpu", USAGE),
    ("edit photo.png --attr Smiling --backend ort --precision bf16", USAGE),
    ("edit photo.png --attr Smiling --backend openvino --precision fp16", USAGE),
    ("edit photo.png --attr Smiling --backend eager --precision int8", USAGE),
    ("edit photo.png --attr Smiling --backend eager --precision fp16", USAGE),
    ("edit photo.png --attr Smiling --backend openvino --device cuda", USAGE),
    ("edit photo.png --attr Smiling --device tpu", USAGE),
    ("edit photo.png --attr Smiling --backend eager --device cuda", USAGE),
    ("edit photo.png --attr Smiling --cuda-graphs", USAGE),
    ("edit photo.png --attr Smiling --backend ort --cuda-graphs", USAGE),
    ("edit photo.png --attr Smiling --batch 0", USAGE),
    ("edit photo.png --attr Smiling --threads 0", USAGE),
    ("edit photo.png --attr Smiling --out notes.txt", USAGE),
    ("edit photo.png --attr Smiling --out /proc/vrfam", USAGE),
    ("edit photo.png --attr Smiling --config huge", USAGE),
    ("edit photo.png --attr Smiling --config tiny --bundle mydir", USAGE),
    ("edit photo.png --attr Smiling --bundle mydir", FAILED),
    ("edit photo.png --attr Smiling --bundle nowhere", FAILED),
    ("edit photo.png --attr Smiling --method nosuch", USAGE),
    ("edit photo.png --attr Smiling --max-pixels 10 --no-align", FAILED),
    ("edit photo.png --attr Smiling --judge --config ffhq-1024", USAGE),
    ("edit photo.png --attr Smiling --no-align --out edits-again", FAILED),   # second run
    ("edit photo.png --attr Smiling --no-align --grid --out clash", FAILED),  # user's file
    ("import --out b", USAGE),
    ("import --stylegan2 g.pt --out b4 --transformer Smilling=g.pt", USAGE),
    ("import --stylegan2 g.pt --out b5 --transformer smiling=g.pt", FAILED),  # not a tnet
    ("import --stylegan2 nowhere.pt --out b", FAILED),
    ("import --stylegan2 notes.txt --out b", FAILED),
    ("import --stylegan2 g.pt --out mydir --force", FAILED),
    ("import --stylegan2 g.pt --out notes.txt --force", USAGE),
    ("import --stylegan2 g.pt --out . --force", USAGE),
    ("import --stylegan2 g.pt --out .. --force", USAGE),
    ("import --stylegan2 g.pt --out bundle", FAILED),                         # exists
    ("import --stylegan2 g.pt --transformer Smiling --out b2", USAGE),
    ("import --e4e g.pt --psp g.pt --out b3", USAGE),
    ("info --json mydir", USAGE),
    ("info --json notes.txt/x.json", USAGE),
    ("info --json /proc/vrfam/x.json", USAGE),
    ("info --bundle nowhere", USAGE),
    ("info --bundle mydir", FAILED),
    ("info photo.png", FAILED),
    ("info --bundle bundle photo.png", USAGE),
    ("export --config tiny --out notes.txt", USAGE),
    ("export --config tiny --out mydir/fp32dir --precision fp64", USAGE),
    ("export --config tiny --out x --components decoder", USAGE),
    ("export --config tiny --out x --max-batch 0", USAGE),
    ("export --config tiny --out x --json mydir", USAGE),
    ("export --config tiny --out x --opset 30", USAGE),
    ("calibrate --config tiny --out x", USAGE),
    ("calibrate --config tiny --out x --samples 2 --images mydir", USAGE),
    ("calibrate --config tiny --out notes.txt --samples 2", USAGE),
    ("calibrate --config tiny --out x --samples 2 --target gpu", USAGE),
    ("build-engines --onnx mydir --out plans", FAILED),
    ("build-engines --onnx nowhere --out plans", FAILED),
    ("build-engines --onnx mydir --out notes.txt", USAGE),
    ("build-engines --onnx mydir --out plans --compute-capability 9.9", USAGE),
    ("bench --config tiny --backend tpu", USAGE),
    ("bench --config tiny --device gpu", USAGE),
    ("bench --config tiny --plot notes.txt/p.png", USAGE),
    ("bench --config tiny --batch 0", USAGE),
    ("profile --config tiny --roofline h200 --precision int8", USAGE),
    ("profile --config tiny --roofline a100", USAGE),
    ("eval --config tiny --alpha nan", USAGE),
    ("eval --config tiny --alpha 5", USAGE),
    ("eval --config tiny --attr Beard", USAGE),
    ("eval --config tiny --method vrfam", USAGE),
    ("eval --config tiny --images mydir", USAGE),
    ("eval --config tiny --samples 1", USAGE),
    ("eval --config tiny --json /proc/vrfam/x.json", USAGE),
    ("train classifier --config tiny --data generator --out r", FAILED),
    ("train classifier --config tiny --data x --out notes.txt", USAGE),
    ("train classifier --config tiny --data x --out r --device tpu", USAGE),
    ("train generator --config tiny --data generator --steps 1 --out r", USAGE),
    ("train transformer --config tiny --data generator --out r --steps 0", USAGE),
    ("synth render --n 0 --out r", USAGE),
    ("synth render --n 2 --out mydir --force", FAILED),
    ("synth render --n 2 --out bundle --force", FAILED),
    ("synth demo-face", USAGE),
    ("synth demo-face --suite mydir", FAILED),
    ("synth sheet --out mydir", USAGE),
    ("triton-repo --onnx mydir --out repo", FAILED),
    ("triton-repo --onnx mydir --engines mydir --out repo", USAGE),
    ("triton-repo --onnx mydir --out mydir --force", FAILED),
    ("serve --max-bytes 0", USAGE),
    ("serve --port 70000", USAGE),
    ("loadtest --wait -1", USAGE),
    ("loadtest --url 127.0.0.1:9 --requests 1 --concurrency 1", FAILED),
    ("gpu-check --out notes.txt", USAGE),
    ("gpu-check --device tpu", USAGE),
    ("gpu-check --out g", USAGE),                     # no CUDA here
    ("nosuchcommand", USAGE),
]

API_CASES = [
    ("pipe(3)", "TypeError"),
    ("pipe(np.zeros((8, 8, 3)))", "TypeError"),
    ("pipe(np.zeros((8, 8, 5), np.uint8))", "TypeError"),
    ("pipe('nothing.png', {'Smiling': 1.0})", "VrfamError"),
    ("pipe('notes.txt', {'Smiling': 1.0})", "VrfamError"),
    ("pipe(photo, [('Smiling', 1.0)])", "TypeError"),
    ("pipe(photo, {'Smiling': 'much'})", "TypeError"),
    ("pipe(photo, {'Smiling': True})", "TypeError"),
    ("pipe(photo, {'Smiling': 2.0})", "UsageError"),
    ("pipe(photo, {'Beard': 1.0})", "UsageError"),
    ("pipe(photo, {'Smiling': float('nan')})", "UsageError"),
    ("EditPipeline.from_bundle(None, backend='eager', device='tpu', align=False)", "UsageError"),
    ("EditPipeline.from_bundle(None, backend='ort', cache_dir='/proc/x', align=False)",
     "VrfamError"),
    ("EditPipeline.from_bundle(None, backend='nosuch', align=False)", "UsageError"),
    ("EditPipeline.from_bundle('nowhere', backend='eager', align=False)", "VrfamError"),
    ("EditPipeline.from_bundle(None, backend='eager', method='nosuch', align=False)",
     "UsageError"),
    ("Bundle.random('tiny', seed=0).encoder(torch.zeros(1, 3, 256, 256))", "ShapeError"),
    ("Bundle.random('tiny', seed=0).encoder(np.zeros((1, 3, 64, 64)))", "ShapeError"),
    ("Bundle.random('tiny', seed=0).generator(torch.zeros(1, 3, 3))", "ShapeError"),
    ("Bundle.random('tiny', seed=0).transformer(torch.zeros(2, 10, 64), torch.zeros(2))",
     "ShapeError"),
    ("Bundle.load('mydir')", "VrfamError"),
    ("Bundle.random('huge')", "VrfamError"),
    ("Bundle.random('tiny', seed=0).save('mydir', overwrite=True)", "VrfamError"),
    ("Bundle.random('tiny', seed=0).save('notes.txt', overwrite=True)", "VrfamError"),
]


def plant(root: Path) -> None:
    """A user's files, and what some cases need (a checkpoint, an earlier edit)."""
    (root / "mydir" / "photos").mkdir(parents=True)
    (root / "mydir" / "thesis.txt").write_text("four years of work\n")
    (root / "mydir" / "photos" / "a.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    (root / "notes.txt").write_text("a regular file\n")
    (root / "empty.png").write_bytes(b"")
    shutil.copy(EXAMPLE, root / "photo.png")
    sys.path.insert(0, str(ROOT / "tests"))
    from layouts import write_stylegan2

    from vrfam_rt import Bundle
    write_stylegan2(root / "g.pt", Bundle.random("tiny", seed=0).generator)
    vrfam = [sys.executable, "-m", "vrfam_rt"]
    run = dict(cwd=root, capture_output=True, check=True)
    subprocess.run(vrfam + ["import", "--stylegan2", "g.pt", "--out", "bundle"], **run)
    subprocess.run(vrfam + ["edit", "photo.png", "--attr", "Smiling", "--no-align", "--out",
                            "edits-again"], **run)
    (root / "clash").mkdir()
    (root / "clash" / "photo_grid.png").write_text("the user's\n")


def snapshot(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()
            and not str(p.relative_to(root)).startswith(("cache", ".cache"))}


def judge(code: int, want: int, stderr: str, lost: list[str]) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    if "Traceback" in stderr:
        return "traceback"
    if lost:
        return f"lost {lost[0]}"
    if code != want:
        return f"exit {code}, policy {want}"
    if not 1 <= len(lines) <= 3:
        return f"{len(lines)} lines"
    return "clean"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="vrfam-bad-inputs."))
    env = os.environ | {"VRFAM_RT_CACHE": str(root / "cache")}
    plant(root)
    before = snapshot(root)
    rows = []
    for text, want in CLI_CASES:
        result = subprocess.run([sys.executable, "-m", "vrfam_rt", *text.split()], cwd=root,
                                env=env, capture_output=True, text=True, timeout=600)
        now = snapshot(root)
        lost = [name for name, digest in before.items() if now.get(name) != digest]
        verdict = judge(result.returncode, want, result.stderr, lost)
        rows.append({"input": f"vrfam-rt {text}", "exit": result.returncode, "verdict": verdict,
                     "says": (result.stderr.strip().splitlines() or [""])[-1][:160]})
    script = textwrap.dedent("""
        import sys, numpy as np, torch
        from vrfam_rt import Bundle, EditPipeline
        pipe = EditPipeline.from_bundle(None, backend="eager", align=False)
        photo = "photo.png"
        for line in sys.stdin.read().splitlines():
            try:
                eval(line)
                print("none", "-", sep="\\t")
            except Exception as exc:
                names = [c.__name__ for c in type(exc).__mro__]
                print(type(exc).__name__, str(exc).splitlines()[0][:160] if str(exc) else "",
                      ",".join(names), sep="\\t")
        """)
    result = subprocess.run([sys.executable, "-c", script], cwd=root, env=env, text=True,
                            input="\n".join(c for c, _ in API_CASES), capture_output=True)
    for (text, want), line in zip(API_CASES, result.stdout.splitlines()):
        name, says, *mro = line.split("\t")
        ok = want in (mro[0].split(",") if mro else [])
        rows.append({"input": text, "exit": name, "verdict": "clean" if ok else f"raised {name}",
                     "says": says})
    now = snapshot(root)
    lost = [name for name, digest in before.items() if now.get(name) != digest]
    clean = sum(r["verdict"] == "clean" for r in rows)
    for r in rows:
        print(f"{r['verdict']:<22} {r['exit']!s:<12} {r['input']}\n{'':<35}{r['says']}")
    print(f"\n{clean} of {len(rows)} bad inputs met cleanly; planted files lost or changed: "
          f"{lost or 'none'}")
    if args.json:
        args.json.write_text(json.dumps({"rows": rows, "clean": clean, "total": len(rows),
                                         "lost": lost}, indent=2) + "\n")
    shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
