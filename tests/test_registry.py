"""The backend registry's decisions, table-driven: backend x precision x device -> what
runs and the cache folders it needs, or the one error. Nothing here opens a backend,
so the whole table runs in milliseconds (the end-to-end runs are in test_cache.py,
test_openvino.py, test_pipeline.py)."""
import click
import pytest

from vrfam_rt.backends import registry
from vrfam_rt.cli import main
from vrfam_rt.errors import MissingDependency, UsageError



def probes(**usable):
    """Probes that say every backend is usable except those given False."""
    return {name: (lambda ok=usable.get(name, True): (ok, "found" if ok else "missing"))
            for name in registry.SPECS}


@pytest.mark.parametrize("backend, precision, device, runs", [
    # backend, asked precision, asked device -> (backend, precision, device, folders)
    ("eager", "fp32", None, ("eager", "fp32", "cpu", ())),
    ("eager", "bf16", "cpu", ("eager", "bf16", "cpu", ())),
    ("eager", "fp16", "cuda", ("eager", "fp16", "cuda", ())),
    ("eager", "fp16", "cuda:1", ("eager", "fp16", "cuda:1", ())),
    ("ort", "fp32", None, ("ort", "fp32", "cpu", ("fp32",))),
    ("ort", "fp16", "cpu", ("ort", "fp16", "cpu", ("fp16",))),
    ("ort", "int8", None, ("ort", "int8", "cpu", ("fp32", "int8-cpu"))),
    ("ort", "fp32", "cuda", ("ort", "fp32", "cuda", ("fp32",))),
    ("openvino", "fp32", None, ("openvino", "fp32", "cpu", ("fp32",))),
    ("openvino", "bf16", None, ("openvino", "bf16", "cpu", ("fp32",))),
    ("openvino", "int8", "cpu", ("openvino", "int8", "cpu", ("fp32", "int8-openvino"))),
    ("trt", "fp16", None, ("trt", "fp16", "cuda", ("fp16", "engines-fp16"))),
    ("trt", "fp32", None, ("trt", "fp16", "cuda", ("fp16", "engines-fp16"))),
    ("trt", "int8", "cuda:0", ("trt", "int8", "cuda:0", ("int8-trt", "engines-int8"))),
])
def test_a_backend_precision_and_device_decide_what_runs_and_what_is_made(
        backend, precision, device, runs):
    choice = registry.resolve(backend, precision, device)
    folders = choice.needs.folders() if choice.needs else ()
    assert (choice.spec.name, choice.precision, choice.device, folders) == runs


@pytest.mark.parametrize("backend, precision, device, cuda_graphs, error", [
    ("eager", "fp16", None, False, "`backend='eager'` runs `precision='fp16'` on cuda, not "
                                   "`device='cpu'` (float16 convolutions"),
    ("eager", "int8", None, False, "`backend='eager'` runs fp32, bf16, fp16, not "
                                   "`precision='int8'`"),
    ("ort", "bf16", None, False, "`backend='ort'` runs fp32, fp16, int8, not `precision='bf16'`"),
    ("openvino", "fp16", None, False, "`backend='openvino'` runs fp32, bf16, int8, not "
                                      "`precision='fp16'`"),
    ("openvino", "fp32", "cuda", False, "`backend='openvino'` runs on cpu, not `device='cuda'`"),
    ("trt", "bf16", None, False, "`backend='trt'` runs fp16, int8, fp32, not `precision='bf16'`"),
    ("trt", "fp16", "cpu", False, "`backend='trt'` runs on cuda, not `device='cpu'`"),
    ("ort", "fp32", None, True, "`cuda_graphs=True` is for `backend='eager'`, not "
                                "`backend='ort'`"),
    ("tensorflow", "fp32", None, False, "unknown `backend='tensorflow'`; choose from eager, ort, "
                                        "openvino, trt, auto"),
    ("ort", "fp8", None, False, "unknown `precision='fp8'`; choose from fp32, fp16, bf16, int8"),
])
def test_what_a_backend_cannot_run_is_one_usage_error_naming_the_argument(
        backend, precision, device, cuda_graphs, error):
    with pytest.raises(UsageError) as caught:
        registry.resolve(backend, precision, device, cuda_graphs)
    assert str(caught.value).startswith(error)


@pytest.mark.parametrize("usable, precision, device, cuda_graphs, runs", [
    ({}, "fp32", None, False, ("trt", "fp16", "cuda")),
    ({}, "int8", None, False, ("trt", "int8", "cuda")),
    ({"trt": False}, "fp32", None, False, ("openvino", "fp32", "cpu")),
    ({"trt": False}, "fp16", None, False, ("openvino", "fp32", "cpu")),   # emulated on a CPU
    ({"trt": False}, "int8", None, False, ("openvino", "int8", "cpu")),
    ({"trt": False, "openvino": False}, "fp32", None, False, ("ort", "fp32", "cpu")),
    ({"trt": False, "openvino": False}, "fp16", None, False, ("ort", "fp32", "cpu")),
    ({}, "fp32", "cpu", False, ("openvino", "fp32", "cpu")),        # trt runs on cuda only
    ({"trt": False}, "fp32", "cuda", False, ("ort", "fp32", "cuda")),
    ({}, "fp32", None, True, ("eager", "fp32", "cpu")),             # CUDA graphs: eager's
])
def test_auto_is_decided_in_one_place(usable, precision, device, cuda_graphs, runs):
    choice = registry.resolve("auto", precision, device, cuda_graphs, probes=probes(**usable))
    assert (choice.spec.name, choice.precision, choice.device) == runs
    assert choice.notes[0].startswith(f"backend auto: {runs[0]}")


def test_auto_says_why_it_passed_over_a_backend():
    choice = registry.resolve("auto", "fp32", probes=probes(trt=False))
    assert choice.notes == ("backend auto: openvino (no trt: missing)",)


def test_auto_with_nothing_usable_on_the_device_names_what_is_missing():
    with pytest.raises(MissingDependency, match=r"no backend runs on `device='cuda'` here "
                                                r"\(no trt: missing; no ort: missing\)"):
        registry.resolve("auto", "fp32", "cuda", probes=probes(trt=False, ort=False))


def test_a_remap_is_told_to_the_user():
    choice = registry.resolve("trt", "fp32")
    assert choice.notes == ("precision fp32 runs as fp16 on trt (TensorRT plans are built "
                            "fp16 (fp32 accumulation))",)


@pytest.mark.parametrize("spec", registry.SPECS.values(), ids=lambda s: s.name)
def test_every_spec_is_consistent(spec):
    assert spec.needs.keys() <= set(spec.precisions)
    assert all(runs in spec.precisions for runs, _ in spec.remap.values())
    assert all(runs in spec.precisions for runs, _ in spec.auto_remap.values())
    assert set(spec.precision_devices) == set(spec.precision_device_why)
    if "int8" in spec.needs:        # INT8 graphs calibrated for its own target first
        assert spec.needs["int8"].graphs == f"int8-{spec.int8_targets[0]}"
    opened = spec.open_class()
    assert opened.name == spec.name and callable(opened.open)


def test_bench_takes_int8_graphs_of_any_target_a_backend_runs_its_own_first():
    assert registry.graph_folders("openvino", "int8") == ("int8-openvino", "int8-cpu")
    assert registry.graph_folders("openvino", "bf16") == ("fp32",)
    assert registry.graph_folders("ort", "int8") == ("int8-cpu",)


def test_one_run_of_several_backends_shares_the_gpu_when_one_needs_it():
    assert registry.default_device(["eager", "openvino"]) == "cpu"
    assert registry.default_device(["eager", "trt"]) == "cuda"


def option(command: str, name: str) -> click.Option:
    return next(p for p in main.commands[command].params if p.name == name)


@pytest.mark.parametrize("command", ["edit", "eval", "serve", "profile"])
def test_the_cli_offers_what_the_registry_declares(command):
    assert tuple(option(command, "backend").type.choices) == registry.CHOICES
    assert tuple(option(command, "precision").type.choices) == registry.PRECISIONS
    for spec in registry.SPECS.values():
        assert f"{spec.name}: {spec.describe_precisions()}" in option(command, "precision").help


@pytest.mark.parametrize("environ, root", [
    ({"VRFAM_RT_CACHE": "/data/cache", "XDG_CACHE_HOME": "/xdg"}, "/data/cache"),
    ({"XDG_CACHE_HOME": "/xdg"}, "/xdg/vrfam-rt"),
    ({}, "~/.cache/vrfam-rt"),
])
def test_the_api_and_the_cli_share_one_cache_root(environ, root):
    from pathlib import Path

    from vrfam_rt.on_demand import default_cache_root

    assert default_cache_root(environ) == Path(root).expanduser()
