"""Bundles: seeded construction, save/load round trip, integrity checks, atomic writes."""
import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from vrfam_rt import Bundle
from vrfam_rt import bundle as bundle_mod
from vrfam_rt.fileio import sha256_file
from vrfam_rt.errors import VrfamError


def outputs(b, seed=0):
    g = torch.Generator().manual_seed(seed)
    image = torch.rand(2, 3, 64, 64, generator=g) * 2 - 1
    alphas = torch.tensor([[1.0] + [0.0] * 8, [0.0, -0.5] + [0.0] * 7])
    with torch.no_grad():
        w = b.encoder(image)
        return {"w": w, "edit": b.transformer(w, alphas), "image": b.generator(w),
                "logits": b.classifier(w), "id": b.identity(image)}


def test_random_bundles_are_reproducible_by_seed():
    a, b, c = Bundle.random("tiny", seed=5), Bundle.random("tiny", seed=5), Bundle.random("tiny", seed=6)
    assert a.digest == b.digest != c.digest
    assert torch.equal(a.generator.input.input, b.generator.input.input)


def test_random_bundle_does_not_touch_the_global_rng():
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    Bundle.random("tiny", seed=1)
    assert torch.equal(torch.rand(3), expected)


def test_random_encoder_is_centred_on_the_generator_mean_latent(tiny):
    mean = tiny.generator.mean_latent(4096, seed=0)
    assert torch.allclose(tiny.encoder.latent_avg, mean.expand(10, 64))


def test_api_shapes(tiny):
    out = outputs(tiny)
    assert out["w"].shape == (2, 10, 64) and out["edit"].shape == (2, 10, 64)
    assert out["image"].shape == (2, 3, 64, 64) and out["logits"].shape == (2, 40)
    assert out["id"].shape == (2, 64)
    assert tiny.transformer.attributes == tiny.attributes
    assert all(not m.training for m in tiny.modules.values())


def test_save_then_load_reproduces_every_network(tiny, tmp_path):
    path = tiny.save(tmp_path / "b")
    loaded = Bundle.load(path)
    before, after = outputs(tiny), outputs(loaded)
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert loaded.digest == tiny.digest


def test_manifest_records_format_config_order_methods_hashes_and_provenance(tiny, tmp_path):
    path = tiny.save(tmp_path / "b")
    manifest = json.loads((path / "bundle.json").read_text())
    assert manifest["format_version"] == 1
    assert manifest["config"]["name"] == "tiny"
    assert manifest["attributes"][:2] == ["Smiling", "Eyeglasses"]
    assert manifest["transformer"] == {"methods": {a: "nonlinear" for a in tiny.attributes},
                                       "layers": [0, 6]}
    entry = manifest["files"]["generator"]
    assert entry["sha256"] == sha256_file(path / "generator.safetensors")
    assert entry["keys"] == len(tiny.generator.state_dict())
    assert manifest["provenance"]["encoder"] == {"source": "random", "seed": 0}


def test_a_changed_byte_is_reported_as_corruption(tiny, tmp_path):
    path = tiny.save(tmp_path / "b")
    f = path / "classifier.safetensors"
    data = bytearray(f.read_bytes())
    data[-1] ^= 0xFF
    f.write_bytes(bytes(data))
    with pytest.raises(VrfamError, match=r"classifier\.safetensors is corrupt"):
        Bundle.load(path)


def rewrite(path, name, change):
    """Edit a component file and fix its hash, so only the key/shape checks can catch it."""
    f = path / f"{name}.safetensors"
    state = load_file(f)
    change(state)
    save_file(state, f)
    manifest = json.loads((path / "bundle.json").read_text())
    manifest["files"][name]["sha256"] = sha256_file(f)
    (path / "bundle.json").write_text(json.dumps(manifest))


def test_an_unexpected_key_is_named(tiny, tmp_path):
    path = tiny.save(tmp_path / "b")
    rewrite(path, "generator", lambda s: s.update({"extra.weight": torch.zeros(1)}))
    with pytest.raises(VrfamError, match=r"generator\.safetensors: unexpected key 'extra\.weight'"):
        Bundle.load(path)


def test_a_missing_key_is_named(tiny, tmp_path):
    path = tiny.save(tmp_path / "b")
    rewrite(path, "encoder", lambda s: s.pop("latent_avg"))
    with pytest.raises(VrfamError, match=r"encoder\.safetensors: missing key 'latent_avg'"):
        Bundle.load(path)


def test_a_shape_difference_is_named(tiny, tmp_path):
    path = tiny.save(tmp_path / "b")
    rewrite(path, "classifier", lambda s: s.update({"fcs.2.bias": torch.zeros(39)}))
    with pytest.raises(VrfamError, match=r"'fcs\.2\.bias' has shape \[39\], vrfam-rt expects \[40\]"):
        Bundle.load(path)


def test_not_a_bundle_and_wrong_version(tmp_path, tiny):
    with pytest.raises(VrfamError, match="holds no bundle.json"):
        Bundle.load(tmp_path)
    path = tiny.save(tmp_path / "b")
    manifest = json.loads((path / "bundle.json").read_text())
    manifest["format_version"] = 99
    (path / "bundle.json").write_text(json.dumps(manifest))
    with pytest.raises(VrfamError, match="format version 99"):
        Bundle.load(path)


def test_save_refuses_to_overwrite_unless_asked(tiny, tmp_path):
    path = tiny.save(tmp_path / "b")
    with pytest.raises(VrfamError, match="already exists"):
        tiny.save(path)
    other = Bundle.random("tiny", seed=1)
    other.save(path, overwrite=True)
    assert Bundle.load(path).digest == other.digest
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b"]


def test_an_interrupted_save_leaves_the_old_bundle_and_no_half_files(tiny, tmp_path, monkeypatch):
    path = tiny.save(tmp_path / "b")
    serialise, count = bundle_mod._serialise, []

    def interrupted_at_third_component(module):
        count.append(module)
        if len(count) == 3:
            raise KeyboardInterrupt
        return serialise(module)

    monkeypatch.setattr(bundle_mod, "_serialise", interrupted_at_third_component)
    with pytest.raises(KeyboardInterrupt):
        Bundle.random("tiny", seed=2).save(path, overwrite=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b"]
    assert Bundle.load(path).digest == tiny.digest


def test_a_missing_component_says_how_to_get_it(tiny, tmp_path):
    partial = Bundle(tiny.config, {"generator": tiny.generator})
    with pytest.raises(VrfamError, match="has no encoder; import one with `vrfam-rt import --e4e"):
        partial.encoder
    assert partial.identity is None
    path = partial.save(tmp_path / "g")
    assert set(Bundle.load(path).modules) == {"generator"}


def test_load_a_subset_of_components(tiny, tmp_path):
    path = tiny.save(tmp_path / "b")
    b = Bundle.load(path, components=("generator",))
    assert set(b.modules) == {"generator"} and b.digest == tiny.digest
