"""ffhq-1024: each exported graph equals eager through ONNX Runtime; FP16 is safe by emulation."""
import pytest
import torch

from vrfam_rt import Bundle
from vrfam_rt.export.fp16 import fp16_report
from vrfam_rt.export.lowering import export_bundle, policy_module
from vrfam_rt.export.parity import parity

pytestmark = pytest.mark.full


@pytest.fixture(scope="module")
def bundle():
    return Bundle.random("ffhq-1024", seed=0)


@pytest.mark.parametrize("component", ["encoder", "transformer", "generator"])
def test_fp32_graph_matches_eager_at_batch_1_and_3(bundle, component, tmp_path):
    export_bundle(bundle, tmp_path, ("fp32",), (component,))
    rows = parity(bundle, tmp_path / "fp32", batches=(1, 3))
    assert [r["batch"] for r in rows] == [1, 3]
    assert all(r["ok"] for r in rows), rows


def test_fp16_emulation_at_full_size(bundle):
    report = fp16_report(bundle)
    assert all(r["finite"] for r in report.values()), report
    assert report["generator"]["psnr_db"] >= 40, report
    assert report["encoder"]["rel_l2"] < 1e-2 and report["transformer"]["rel_l2"] < 1e-2


def test_fp16_safe_generator_keeps_the_fp32_output(bundle):
    w = torch.randn(1, 18, 512, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        safe = policy_module(bundle, "generator", "fp16")(w)
        reference = bundle.generator(w, fused=True)
    assert ((safe - reference).abs().max() / reference.abs().max()).item() < 1e-5
