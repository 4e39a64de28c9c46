"""Fixtures shared by the test modules (pytest finds them here; nobody imports this file)."""
import json
import random

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from vrfam_rt import Bundle

ROUND_TRIP_DIFFS: dict[str, float] = {}


def session_cache(tmp_path_factory):
    return tmp_path_factory.getbasetemp() / "cache"


@pytest.fixture(autouse=True)
def private_cache(tmp_path_factory, monkeypatch):
    """Commands that export or build on demand write into a cache of the test session's,
    never into the user's ~/.cache (a test that checks the cache sets its own)."""
    monkeypatch.setenv("VRFAM_RT_CACHE", str(session_cache(tmp_path_factory)))


@pytest.fixture(scope="session")
def shared_cache(tmp_path_factory):
    """The cache the commands of every test use (private_cache), for tests that share
    exports on purpose."""
    return session_cache(tmp_path_factory)


@pytest.fixture(scope="session")
def tiny_exports(tmp_path_factory, tiny):
    """`vrfam-rt export --config tiny --verify` once per session, written where the
    runtime caches the tiny bundle's graphs, so every `--config tiny --backend ort|trt`
    command after it reuses them (an export costs ~10 s a graph on 2 cores).

    Returns (folder with fp32/ and fp16/, the --json results, the command's stdout).
    """
    from vrfam_rt.cli import main
    from vrfam_rt.on_demand import cache_dir

    out = cache_dir(tiny, session_cache(tmp_path_factory))
    report = tmp_path_factory.mktemp("export") / "r.json"
    force = ["--force"] if out.exists() else []      # a test exported on demand before
    result = CliRunner().invoke(main, ["export", "--config", "tiny", "--seed", "0", "--out",
                                       str(out), "--verify", "--json", str(report), *force])
    assert result.exit_code == 0, result.output
    return out, json.loads(report.read_text()), result.stdout


@pytest.fixture(autouse=True)
def seeded():
    """Every test starts from the same global RNG state, so a random input drawn without an
    explicit generator is the same whichever tests ran before it."""
    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)


@pytest.fixture(scope="session")
def tiny():
    """A seeded random `tiny` bundle, shared read-only by tests: a test that changes a
    module's state or settings works on a copy."""
    return Bundle.random("tiny", seed=0)


@pytest.fixture
def one_thread():
    """One intra-op thread (trainer tests): the tiny networks gain nothing from more, and
    spinning OpenMP workers slow a loaded 2-core machine down many times over."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def dlib():
    """Face alignment and dlib's descriptor need dlib (the `align` extra): skip without it."""
    return pytest.importorskip("dlib")


@pytest.fixture
def record_diff():
    """Record the largest forward difference of an import round trip for the summary."""
    def record(name: str, diff: float) -> None:
        ROUND_TRIP_DIFFS[name] = max(diff, ROUND_TRIP_DIFFS.get(name, 0.0))
    return record


def pytest_terminal_summary(terminalreporter):
    if ROUND_TRIP_DIFFS:
        terminalreporter.section("import round trips: largest forward-pass difference")
        for name, diff in sorted(ROUND_TRIP_DIFFS.items()):
            terminalreporter.write_line(f"{name:<40} {diff:.3e}")
