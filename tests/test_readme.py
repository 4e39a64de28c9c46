"""README.md runs as printed: every fenced code block, in README order, in one folder.

The folder starts with same-layout stand-ins of the public files the README names
(tests/layouts.py writes them from a tiny random bundle), a photo, `photo.jpg`, and a
one-second clip with sound, `clip.mp4`.
Shell blocks run in one bash session, as in a reader's terminal: each block under
`set -e`, with this environment's bin first on PATH, HOME and VRFAM_RT_CACHE inside the
temporary folder, and background jobs (`vrfam-rt serve &`) alive until a later block
stops them. Python blocks run with this interpreter. Later blocks see what earlier
ones made.

A block runs unchanged except by these rules, each reported as a skip with its reason:
- `<!-- not run: REASON -->` on the line before a block skips it (minutes-long
  reproductions of recorded figures, data we do not have);
- `make demo` runs the Makefile's demo recipe here; other make targets (test, setup)
  are skipped: they set up `.venv` or run this suite themselves;
- `docker run` is skipped (no docker), and so is a block that needs an NVIDIA GPU
  (`--backend trt`, `--device cuda`, `make gpu-check`) where torch sees none;
- the serving ports 8000, 8001 and 8002 become free ports of 127.0.0.1, so that a run
  never meets another server; every request stays on this machine.
"""
from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
MAKEFILE = ROOT / "Makefile"
BIN = Path(sys.executable).parent            # the environment running this suite
BLOCK_TIMEOUT_S = 600

FENCE = re.compile(r"^```(\w*)\n(.*?)^```[ \t]*$", re.S | re.M)
NOT_RUN = re.compile(r"<!--\s*not run:\s*(.+?)\s*-->\s*$")
SHELL, PYTHON = ("", "sh", "bash", "shell"), ("python",)
NEEDS_GPU = re.compile(r"--backend[ =]trt\b|--device[ =]cuda\b|\bmake gpu-check\b")
PORTS = re.compile(r"(?<!\d)800([012])(?!\d)")
WEIGHT_FILE = re.compile(r"[\w.-]+\.(?:pth\.tar|pth|pt|pkl)\b")


@dataclass(frozen=True)
class Block:
    line: int            # of the opening fence in README.md
    lang: str
    code: str
    not_run: str | None  # the reason of a `<!-- not run: ... -->` line before it


def readme_blocks() -> list[Block]:
    text = README.read_text()
    found = []
    for match in FENCE.finditer(text):
        before = text[:match.start()].rstrip("\n").rsplit("\n", 1)[-1]
        note = NOT_RUN.search(before)
        found.append(Block(text.count("\n", 0, match.start()) + 1, match.group(1),
                           match.group(2), note.group(1) if note else None))
    return found


BLOCKS = readme_blocks()


def make_recipe(target: str) -> str:
    """The Makefile recipe of `target` as shell lines: $(VENV) is this environment,
    the other variables that name a file of the checkout become absolute paths."""
    text = MAKEFILE.read_text()
    variables = dict(re.findall(r"^(\w+)\s*:?=\s*(.*?)\s*$", text, re.M))
    recipe = re.search(rf"^{re.escape(target)}:.*\n((?:\t.*\n)+)", text, re.M).group(1)

    def expand(match):
        name = match.group(1)
        if name == "VENV":
            return str(BIN.parent)
        value = variables[name]
        return str(ROOT / value) if (ROOT / value).exists() else value

    return "\n".join(re.sub(r"\$\((\w+)\)", expand, line.strip().lstrip("@"))
                     for line in recipe.splitlines())


def plan(block: Block, ports: dict[str, str]) -> tuple[str | None, str]:
    """(reason to skip or None, the code to run) by the rules of the module docstring."""
    if block.not_run:
        return block.not_run, ""
    if "docker run" in block.code:
        return "needs docker (not installed here) and an NVIDIA GPU", ""
    if NEEDS_GPU.search(block.code):
        import torch
        if not torch.cuda.is_available():
            return "needs an NVIDIA GPU; torch sees none", ""
    lines = [line for line in block.code.splitlines() if line.strip()]
    if lines and all(line.startswith("make ") for line in lines):
        targets = [line.split()[1] for line in lines]
        if "demo" not in targets:
            return f"make {', '.join(targets)}: sets up .venv or runs this suite itself", ""
        return None, make_recipe("demo")
    return None, PORTS.sub(lambda m: ports[m.group(1)], block.code)


def free_ports(n: int) -> list[int]:
    sockets = [socket.socket() for _ in range(n)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def write_stand_ins(folder: Path) -> list[str]:
    """The public files the README names, in their upstream layouts at `tiny` size, and
    photo.jpg; returns the names written."""
    import torch

    sys.path.insert(0, str(Path(__file__).parent))
    import nvidia_layout
    from layouts import write_bare, write_e4e, write_stylegan2
    from vrfam_rt import Bundle, models

    b = Bundle.random("tiny", seed=0)
    g = b.generator
    write_stylegan2(folder / "stylegan2-ffhq-config-f.pt", g)
    write_e4e(folder / "e4e_ffhq_encode.pt", b.encoder, g)
    write_bare(folder / "latent_classifier_epoch_20.pth", b.classifier)
    write_bare(folder / "model_ir_se50.pth", b.identity, drop_suffix="num_batches_tracked")
    nvidia_layout.write(folder / "ffhq.pkl", {"G_ema": nvidia_layout.network(
        nvidia_layout.Spec(z_dim=64, w_dim=64, map_layers=2))})
    torch.manual_seed(0)
    for index in (31, 15):               # Smiling, Eyeglasses: the released F_mapping
        edit = models.LinearEdit(g.config.n_latent, g.config.style_dim, (0, g.config.n_latent))
        write_bare(folder / f"tnet_{index}.pth.tar", edit)
    cbook = pytest.importorskip("matplotlib.cbook")
    shutil.copy(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False), folder / "photo.jpg")
    from vrfam_rt.benchmarks.video import make_clip     # a second of a face drifting, a tone
    make_clip(folder / "clip.mp4", seconds=1, rate=8, size=(320, 240))
    return sorted(p.name for p in folder.iterdir())


class Shell:
    """One bash session fed block after block, as a reader's terminal."""

    def __init__(self, cwd: Path, env: dict[str, str], logs: Path):
        self.logs = logs
        self.proc = subprocess.Popen(["bash"], stdin=subprocess.PIPE, cwd=cwd, env=env,
                                     text=True, start_new_session=True,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def run(self, code: str, name: str) -> str:
        script, out, done = (self.logs / f"{name}.{ext}" for ext in ("sh", "out", "done"))
        script.write_text(code + "\n")
        self.proc.stdin.write(f"set -e\nsource {script} > {out} 2>&1 < /dev/null\n"
                              f"set +e\necho > {done}\n")
        self.proc.stdin.flush()
        deadline = time.monotonic() + BLOCK_TIMEOUT_S
        while not done.exists():
            if self.proc.poll() is not None:
                pytest.fail(f"the block failed (bash exit status {self.proc.returncode}):\n"
                            f"{code}\n--- output ---\n{out.read_text() if out.exists() else ''}")
            if time.monotonic() > deadline:
                pytest.fail(f"the block ran over {BLOCK_TIMEOUT_S} s:\n{code}\n--- output ---\n"
                            f"{out.read_text()}")
            time.sleep(0.1)
        return out.read_text()

    def close(self) -> None:
        """End the session and whatever it left running (its process group alone)."""
        if self.proc.poll() is None:
            self.proc.stdin.close()
        for sig, wait_s in ((signal.SIGTERM, 10), (signal.SIGKILL, 5)):
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                break
            try:
                self.proc.wait(timeout=wait_s)
            except subprocess.TimeoutExpired:
                continue


@dataclass
class Session:
    work: Path
    logs: Path
    env: dict[str, str]
    shell: Shell
    ports: dict[str, str]
    failed: str | None = None


@pytest.fixture(scope="module")
def session(tmp_path_factory):
    base = tmp_path_factory.mktemp("readme")
    work, logs, home, tmp = (base / name for name in ("work", "blocks", "home", "tmp"))
    for folder in (work, logs, home, tmp):
        folder.mkdir()
    written = write_stand_ins(work)
    ports = dict(zip("012", map(str, free_ports(3))))
    runnable = [b for b in BLOCKS if plan(b, ports)[0] is None]
    named = {name for b in runnable for name in WEIGHT_FILE.findall(b.code)}
    assert named <= set(written), f"README blocks name files with no stand-in: {named - set(written)}"
    env = {k: v for k, v in os.environ.items() if k not in ("XDG_CACHE_HOME", "PYTHONPATH")}
    env |= {"PATH": f"{BIN}{os.pathsep}{env.get('PATH', '')}", "HOME": str(home),
            "TMPDIR": str(tmp),
            # the CLI's cache is the Python API's default one, as on a reader's machine
            "VRFAM_RT_CACHE": str(home / ".cache" / "vrfam-rt")}
    shell = Shell(work, env, logs)
    yield Session(work, logs, env, shell, ports)
    shell.close()


def test_every_fence_is_a_block_of_a_known_language():
    text = README.read_text()
    fences = [n for n, line in enumerate(text.splitlines(), 1) if line.lstrip().startswith("```")]
    assert len(fences) == 2 * len(BLOCKS), \
        f"a fence the test does not see (indented, or unclosed) near lines {fences}"
    unknown = [(b.line, b.lang) for b in BLOCKS if b.lang not in SHELL + PYTHON]
    assert not unknown, f"blocks in a language the test cannot run: {unknown}"


@pytest.mark.parametrize("block", BLOCKS, ids=[f"L{b.line}-{b.lang or 'sh'}" for b in BLOCKS])
def test_readme_block_runs_as_printed(session, block):
    reason, code = plan(block, session.ports)
    if reason:
        pytest.skip(f"README line {block.line}: {reason}")
    if session.failed:
        pytest.skip(f"README line {block.line}: not run after the failure of {session.failed}")
    session.failed = f"the block at README line {block.line}"
    if block.lang in PYTHON:
        script = session.logs / f"L{block.line}.py"
        script.write_text(code)
        result = subprocess.run([sys.executable, str(script)], cwd=session.work, env=session.env,
                                capture_output=True, text=True, timeout=BLOCK_TIMEOUT_S)
        assert result.returncode == 0, f"{code}\n--- output ---\n{result.stdout}{result.stderr}"
    else:
        session.shell.run(code, f"L{block.line}")
    session.failed = None
