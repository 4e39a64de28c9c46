"""`vrfam-rt import --stylegan2 NETWORK.pkl`: NVIDIA's network pickles are read as data (none
of the code they carry runs), and the imported generator computes what NVIDIA's does."""
import hashlib
import io
import json
import os
import pickle

import pytest
import torch

import nvidia_layout as nv
from test_import import refused, run     # the same CLI runner and one-line refusal check
from vrfam_rt import Bundle
from vrfam_rt.importers.checkpoints import import_bundle

# An ffhq-like network (mapping lr 0.01, fp16 blocks, clamp 256) and one that differs in every
# configurable way: 256 px, z_dim != w_dim != 512, 2 mapping layers at lr 0.1, no fp16 blocks,
# and a clamp low enough that it cuts the activations (so clamping is checked, not idle).
SPECS = {
    "64px-protocol4": (nv.Spec(), 4),
    "256px-protocol3": (nv.Spec(resolution=256, z_dim=16, w_dim=24, map_layers=2, lr=0.1,
                                channel_base=512, channel_max=16, num_fp16_res=0,
                                conv_clamp=0.5), 3),
}
# Float32 rounding: every layer adds a few ulps (2^-24 ~ 6e-8) relative to its largest
# activation, and reductions over fan-ins of a few hundred terms add sqrt(fan-in) of them;
# 12 layers deep that stays below 1e-5. The bound, 1e-4, has room to spare.
RELATIVE = 1e-4


def relative(a, b):
    return ((a - b).abs().max() / b.abs().max()).item()


@pytest.fixture(scope="module", params=sorted(SPECS))
def case(request, tmp_path_factory):
    """(spec, NVIDIA-layout G_ema, G, pickle path, imported bundle) per spec."""
    spec, protocol = SPECS[request.param]
    folder = tmp_path_factory.mktemp(request.param)
    g_ema, g = nv.network(spec, seed=1), nv.network(spec, seed=2)
    path = nv.write(folder / "network-snapshot.pkl", {"G_ema": g_ema, "G": g}, protocol)
    result = run("import", "--stylegan2", path, "--out", folder / "bundle")
    assert result.exit_code == 0, result.output
    return spec, g_ema, g, path, Bundle.load(folder / "bundle")


def globals_of(path):
    """The module.name of every global a pickle asks for (read with inert stand-ins)."""
    names = set()

    class Inert(dict):
        def __init__(self, *args, **kwargs):
            pass

        def __setstate__(self, state):
            pass

    class Recorder(pickle.Unpickler):
        def find_class(self, module, name):
            names.add(f"{module}.{name}")
            return Inert

    with open(path, "rb") as f:
        Recorder(f).load()
    return names


def test_the_pickle_has_the_protocol_and_globals_of_nvidias_files(case):
    spec, *_, path, _ = case
    data = path.read_bytes()
    protocol = next(p for s, p in SPECS.values() if s == spec)
    assert data[1] == protocol
    names = globals_of(path)
    assert ("builtins.set" in names) == (protocol == 3)   # protocol 4 has a set opcode
    assert names >= {
        "torch_utils.persistence._reconstruct_persistent_obj", "dnnlib.util.EasyDict",
        "torch.storage._load_from_bytes", "torch._utils._rebuild_parameter",
        "torch._utils._rebuild_tensor_v2", "collections.OrderedDict", "numpy.dtype",
        "numpy.core.multiarray.scalar"}
    assert nv.HARMLESS_SRC.encode() in data


def test_synthesis_reproduces_nvidias_formulas_for_the_same_wplus(case, record_diff):
    spec, g_ema, _, path, bundle = case
    generator = bundle.generator
    ws = torch.randn(2, generator.n_latent, spec.w_dim, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        ours, reference = generator(ws), nv.synthesis(g_ema, ws)
        assert relative(ours, reference) < RELATIVE
        for form in ({"fused": True}, {"folded": True}):
            assert relative(generator(ws, **form), reference) < RELATIVE, form
    record_diff(f"NVIDIA pickle {spec.resolution}px synthesis (relative)",
                relative(ours, reference))
    if spec.conv_clamp is not None and spec.conv_clamp < 1:
        for layer in g_ema.modules():
            if hasattr(layer, "conv_clamp"):
                layer.conv_clamp = None
        try:
            with torch.no_grad():
                assert relative(nv.synthesis(g_ema, ws), reference) > 10 * RELATIVE  # it clamps
        finally:
            for layer in g_ema.modules():
                if hasattr(layer, "conv_clamp"):
                    layer.conv_clamp = spec.conv_clamp


def test_mapping_and_truncation_are_nvidias(case):
    spec, g_ema, _, _, bundle = case
    generator = bundle.generator
    z = torch.randn(8, spec.z_dim, generator=torch.Generator().manual_seed(6))
    with torch.no_grad():
        w, reference = generator.mapping(z), nv.mapping(g_ema, z)
        assert relative(w, reference) < 1e-5
        assert torch.equal(generator.mean_latent(), g_ema.mapping.w_avg[None])
        truncated = generator.truncate(w, 0.7)
    assert torch.allclose(truncated, g_ema.mapping.w_avg.lerp(w, 0.7), rtol=0, atol=1e-6)


def test_the_config_comes_from_the_pickle(case):
    spec, g_ema, _, path, bundle = case
    config = bundle.config.generator
    assert (config.size, config.style_dim, config.n_mlp) == (spec.resolution, spec.w_dim,
                                                             spec.map_layers)
    assert config.latent_dim == spec.z_dim and config.layer_lr == (spec.lr,) * spec.map_layers
    assert config.channels == tuple(spec.channels(2**i) for i in range(2, config.log_size + 1))
    assert config.conv_clamp == spec.conv_clamp and config.w_avg
    record = bundle.provenance["generator"]
    assert record["pickle_key"] == "G_ema" and record["file"] == path.name
    assert record["init_kwargs"]["synthesis_kwargs"]["num_fp16_res"] == spec.num_fp16_res
    assert record["init_kwargs"]["mapping_kwargs"]["num_layers"] == spec.map_layers
    assert record["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()


def test_pickle_key_picks_the_trained_generator(case, tmp_path):
    spec, g_ema, g, path, _ = case
    bundle = import_bundle(stylegan2=path, pickle_key="G")
    assert torch.equal(bundle.generator.input.input[0], g.synthesis.b4.const)
    assert not torch.equal(bundle.generator.input.input[0], g_ema.synthesis.b4.const)
    assert bundle.provenance["generator"]["pickle_key"] == "G"


def test_an_nvidia_pickle_serves_as_generator_next_to_an_e4e_file(tmp_path):
    from layouts import write_e4e
    from vrfam_rt import models
    from vrfam_rt.config import load_config
    spec = nv.Spec(w_dim=64, z_dim=64, map_layers=2)     # the tiny encoder's width
    config = load_config("tiny")
    e4e = write_e4e(tmp_path / "e4e.pt", models.build(config, "encoder"),
                    models.build(config, "generator"), with_decoder=False)
    path = nv.write(tmp_path / "ffhq.pkl", {"G_ema": nv.network(spec)})
    bundle = import_bundle(stylegan2=path, e4e=e4e)
    assert set(bundle.modules) == {"generator", "encoder"}
    assert bundle.provenance["generator"]["layout"].startswith("NVIDIA")


# ---- refusals: one line, nothing written, nothing run ----------------------------------------
class System:
    def __init__(self, command):
        self.command = command

    def __reduce__(self):
        return os.system, (self.command,)


@pytest.mark.parametrize("protocol", [3, 4])
def test_a_reduce_to_os_system_is_refused_and_never_called(tmp_path, protocol):
    marker = tmp_path / "pwned"
    path = nv.write(tmp_path / "evil.pkl", {"G_ema": nv.network(nv.Spec()),
                                            "x": System(f"touch {marker}")}, protocol)
    line = refused(tmp_path, "--stylegan2", path, match="evil.pkl: refused")
    assert "posix.system" in line and "nothing in the file was run" in line
    assert not marker.exists()


def test_module_src_is_never_run(tmp_path):
    """The network's source travels in the file; it is kept out of reach, and what the
    file's weights say is imported as data."""
    marker = tmp_path / "pwned"
    g = nv.network(nv.Spec(resolution=8, map_layers=1))
    for module in g.modules():
        module.module_src = f"open({str(marker)!r}, 'w').write('ran')\n"
    path = nv.write(tmp_path / "src.pkl", {"G_ema": g})
    assert f"open({str(marker)!r}".encode() in path.read_bytes()
    assert run("import", "--stylegan2", path, "--out", tmp_path / "b").exit_code == 0
    assert not marker.exists()
    evil = nv.Net("Exploit")                      # a persistent object that is no generator
    evil.module_src = f"open({str(marker)!r}, 'w').write('ran')\n"
    path = nv.write(tmp_path / "exploit.pkl", {"G_ema": evil})
    refused(tmp_path, "--stylegan2", path,
            match="holds a Exploit, not NVIDIA's StyleGAN2 Generator")
    assert not marker.exists()


def test_storage_bytes_are_read_weights_only(tmp_path):
    """Plain pickle hands each storage's bytes to a full torch.load; those bytes are read
    with weights_only, so code hidden in them is refused."""
    marker = tmp_path / "pwned"
    buffer = io.BytesIO()
    torch.save(System(f"touch {marker}"), buffer, _use_new_zipfile_serialization=False)
    from torch.storage import _load_from_bytes

    class Smuggler:
        def __reduce__(self):
            return _load_from_bytes, (buffer.getvalue(),)
    path = nv.write(tmp_path / "bytes.pkl", {"G_ema": nv.network(nv.Spec()), "x": Smuggler()})
    refused(tmp_path, "--stylegan2", path, match="bytes.pkl is not a PyTorch checkpoint or "
            "network pickle (Weights only load failed")
    assert not marker.exists()


def test_a_stylegan3_or_conditional_network_is_refused_by_name(tmp_path):
    g = nv.network(nv.Spec(resolution=8, map_layers=1))
    g.c_dim = 10
    refused(tmp_path, "--stylegan2", nv.write(tmp_path / "cond.pkl", {"G_ema": g}),
            match="cond.pkl: a conditional network (c_dim 10)")
    g = nv.network(nv.Spec(resolution=8, map_layers=1))
    g.synthesis = nv.Net("SynthesisNetwork")
    g.synthesis.input = nv.Net("SynthesisInput")
    g.synthesis.L0_36_512 = nv.Net("SynthesisLayer")
    refused(tmp_path, "--stylegan2", nv.write(tmp_path / "sg3.pkl", {"G_ema": g}),
            match="sg3.pkl: a StyleGAN3 network, not StyleGAN2")


def test_a_missing_key_is_named(tmp_path):
    path = nv.write(tmp_path / "g.pkl", {"G_ema": nv.network(nv.Spec(resolution=8, map_layers=1))})
    refused(tmp_path, "--stylegan2", path, "--pickle-key", "G",
            match="g.pkl: no network under key 'G'; it holds ['G_ema']")


# ---- NVlabs/stylegan2's TensorFlow pickles ------------------------------------------------------
TF_SPEC = nv.Spec(z_dim=48, w_dim=32, map_layers=3, conv_clamp=None, num_fp16_res=0)


def test_a_tensorflow_snapshot_imports_without_tensorflow(tmp_path, record_diff):
    gs, g = nv.network(TF_SPEC, seed=3), nv.network(TF_SPEC, seed=4)
    path = nv.write_tf(tmp_path / "stylegan2-ffhq-config-f.pkl", TF_SPEC, g, gs)
    assert run("import", "--stylegan2", path, "--out", tmp_path / "b").exit_code == 0
    bundle = Bundle.load(tmp_path / "b")
    generator = bundle.generator
    ws = torch.randn(2, generator.n_latent, TF_SPEC.w_dim,
                     generator=torch.Generator().manual_seed(7))
    z = torch.randn(4, TF_SPEC.z_dim, generator=torch.Generator().manual_seed(8))
    with torch.no_grad():
        ours, reference = generator(ws), nv.synthesis(gs, ws)
        assert relative(ours, reference) < RELATIVE
        assert relative(generator.mapping(z), nv.mapping(gs, z)) < 1e-5
    assert torch.equal(generator.mean_latent(), gs.mapping.w_avg[None])
    record_diff("NVIDIA TensorFlow pickle 64px synthesis (relative)", relative(ours, reference))
    record = bundle.provenance["generator"]
    assert record["layout"] == "NVIDIA stylegan2 TensorFlow network pickle"
    assert record["pickle_key"] == "G_ema" and record["init_kwargs"]["latent_size"] == 48
    trained = import_bundle(stylegan2=path, pickle_key="G").generator
    assert torch.equal(trained.input.input[0], g.synthesis.b4.const)


def test_a_tensorflow_pickle_that_is_not_a_generator_is_refused(tmp_path):
    path = tmp_path / "bare.pkl"
    path.write_bytes(b"\x80\x03cdnnlib.tflib.network\nNetwork\nq\x00)\x81q\x01.")
    refused(tmp_path, "--stylegan2", path,
            match="a TensorFlow network pickled without its variables")
    gs = nv.network(TF_SPEC)
    path = nv.write_tf(tmp_path / "tf.pkl", TF_SPEC, gs, gs)
    refused(tmp_path, "--stylegan2", path, "--pickle-key", "D",
            match="tf.pkl: a TensorFlow snapshot holds (G, D, Gs): key 'D' is not one of")


def test_pickle_key_needs_a_pickle(tmp_path):
    result = run("import", "--pickle-key", "G", "--out", tmp_path / "o")
    assert result.exit_code == 2 and "--pickle-key" in result.stderr
    assert not (tmp_path / "o").exists()


def test_json_of_the_bundle_keeps_init_kwargs(case):
    *_, bundle = case
    manifest = json.loads((bundle.path / "bundle.json").read_text())
    assert manifest["provenance"]["generator"]["init_kwargs"]["img_channels"] == 3
    assert manifest["config"]["generator"]["w_avg"] is True


def test_numpy_arrays_of_objects_are_refused(tmp_path):
    import numpy as np
    net = nv.TFNetwork("G", {"names": np.array(["a", "b"], dtype=object)})
    path = tmp_path / "objects.pkl"
    with nv._nvidia_globals(), open(path, "wb") as f:
        pickle.dump((net, net, net), f, protocol=4)
    refused(tmp_path, "--stylegan2", path,
            match="objects.pkl: refused, it holds a numpy array that is not plain numbers")


def test_earlier_configs_keep_their_json_and_the_new_fields_round_trip():
    import dataclasses
    from vrfam_rt.config import ModelConfig, load_config
    tiny = load_config("tiny")
    assert set(tiny.to_dict()["generator"]) == {"size", "style_dim", "n_mlp", "channels",
                                                "lr_mlp", "blur_kernel"}
    nvidia = tiny.replace(generator=dataclasses.replace(
        tiny.generator, z_dim=16, lr_mlp=(0.01, 0.1), conv_clamp=256.0, w_avg=True))
    back = ModelConfig.from_dict(json.loads(json.dumps(nvidia.to_dict())))
    assert back == nvidia and back.generator.layer_lr == (0.01, 0.1)
