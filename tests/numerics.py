"""Error measures the tests compare numbers with."""
import torch


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    """Largest absolute difference relative to the largest magnitude of the reference b."""
    return ((a - b).abs().max() / b.abs().max()).item()
