import pytest
import torch

from vrfam_rt import Bundle

ROUND_TRIP_DIFFS: dict[str, float] = {}


@pytest.fixture(scope="session")
def tiny():
    """A seeded random `tiny` bundle, shared read-only by tests."""
    return Bundle.random("tiny", seed=0)


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


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).abs().max() / b.abs().max()).item()
