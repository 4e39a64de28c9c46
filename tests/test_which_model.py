"""Which model: `suite.open_bundle` answers it for every front end, so the CLI, the API
and the server open the same bundle (the same digest) for the same choice."""
import json

import pytest
from click.testing import CliRunner

from vrfam_rt import Bundle
from vrfam_rt.cli import main
from vrfam_rt.cli.common import bundle_from
from vrfam_rt.cli.serve import model_options
from vrfam_rt.errors import UsageError, VrfamError
from vrfam_rt.images import read_provenance
from vrfam_rt.pipeline import EditPipeline
from vrfam_rt.on_demand import prepare
from vrfam_rt.serving.server import edit_model_config
from vrfam_rt.serving.triton_model import PARAMETER, ServeOptions
from vrfam_rt.suite import MANIFEST, default_suite, open_bundle

FACE = default_suite() / "faces" / "example.png"


@pytest.fixture(scope="module")
def suite(tmp_path_factory, tiny):
    """The smallest model suite: suite.json, a vrfam member and an interfacegan member
    with another transformer that shares the vrfam member's other weight files."""
    root = tmp_path_factory.mktemp("which") / "suite"
    first = tiny.save(root / "vrfam")
    other = Bundle(tiny.config, dict(tiny.modules) |
                   {"transformer": Bundle.random("tiny", seed=1).transformer})
    other.save(root / "interfacegan", share=first)
    (root / MANIFEST).write_text(json.dumps({"methods": {"vrfam": {}, "interfacegan": {}}}))
    return root


def digest_of(folder) -> str:
    return Bundle.load(folder).digest


# (arguments of open_bundle, where the expected bundle is): "default/<method>" is the
# shipped suite's member, "suite/<method>" the fixture's, "random <seed>" a tiny one
OPENS = [
    ({}, "default/vrfam"),
    ({"method": "interfacegan"}, "default/interfacegan"),
    ({"bundle": "SUITE"}, "suite/vrfam"),
    ({"bundle": "SUITE", "method": "interfacegan"}, "suite/interfacegan"),
    ({"bundle": "SUITE/interfacegan"}, "suite/interfacegan"),
    ({"bundle": "str:SUITE/vrfam"}, "suite/vrfam"),
    ({"config": "tiny"}, "random 0"),
    ({"config": "tiny", "seed": 0}, "random 0"),
    ({"config": "tiny", "seed": 3}, "random 3"),
]


def arguments(kwargs: dict, suite) -> dict:
    """The table's placeholders made real: SUITE is the fixture's folder (a Path; with
    `str:` a str)."""
    out = dict(kwargs)
    if isinstance(out.get("bundle"), str) and "SUITE" in out["bundle"]:
        text = out["bundle"].removeprefix("str:").replace("SUITE", str(suite))
        out["bundle"] = text if kwargs["bundle"].startswith("str:") else type(suite)(text)
    return out


@pytest.mark.parametrize("kwargs,expected", OPENS, ids=[str(k) for k, _ in OPENS])
def test_each_choice_opens_the_bundle_it_names(suite, kwargs, expected):
    bundle = open_bundle(**arguments(kwargs, suite))
    where, _, detail = expected.partition("/")
    if where == "default":
        assert bundle.path == default_suite() / detail
        assert bundle.digest == digest_of(default_suite() / detail)
    elif where == "suite":
        assert bundle.path == suite / detail
        assert bundle.digest == digest_of(suite / detail)
    else:
        seed = int(expected.split()[1])
        assert bundle.path is None and bundle.config.name == "tiny"
        assert bundle.digest == Bundle.random("tiny", seed=seed).digest


def test_a_bundle_object_is_opened_as_it_is(tiny):
    assert open_bundle(tiny) is tiny


@pytest.mark.parametrize("kwargs", [{"bundle": "SUITE"}, {"config": "tiny"}])
def test_components_load_or_make_only_those_networks(suite, kwargs):
    bundle = open_bundle(**arguments(kwargs, suite), components=("generator", "encoder"))
    assert set(bundle.modules) == {"generator", "encoder"}


def test_two_seeds_are_two_bundles():
    assert open_bundle(config="tiny", seed=1).digest != open_bundle(config="tiny").digest


# (arguments, the error, what its message says: the arguments in Python terms)
REFUSALS = [
    ({"bundle": "SUITE", "config": "tiny"}, UsageError, "give `bundle=` or `config=`, not both"),
    ({"config": "tiny", "method": "vrfam"}, UsageError,
     "`method='vrfam'` picks a bundle of a model suite; `config=` makes a random one"),
    ({"config": "huge"}, UsageError, "`config='huge'` is not a shipped config; choose one of"),
    ({"seed": 3}, UsageError, "`seed=3` seeds the random bundle of a `config=`"),
    ({"bundle": "SUITE/vrfam", "seed": 0}, UsageError, "(leave out `seed=`)"),
    ({"bundle": "SUITE/vrfam", "method": "interfacegan"}, UsageError,
     "is a single bundle (leave out `method=`)"),
    ({"bundle": "SUITE", "method": "e4e-linear"}, VrfamError, "has no e4e-linear bundle"),
    ({"bundle": "SUITE", "method": "nosuch"}, UsageError,
     "`method='nosuch'` is not one of vrfam, interfacegan"),
    ({"method": "Vrfam"}, UsageError, "`method='Vrfam'` is not one of"),
    ({"bundle": "SUITE/nowhere"}, VrfamError, "nowhere"),
    ({"bundle": 3}, TypeError, "bundle must be a Bundle, a bundle or model suite folder"),
    ({"config": "tiny", "seed": 1.5}, TypeError, "seed must be an int, not float"),
    ({"config": "tiny", "seed": True}, TypeError, "seed must be an int, not bool"),
    ({"method": 1}, TypeError, "method must be a name"),
]


@pytest.mark.parametrize("kwargs,error,says", REFUSALS, ids=[str(k) for k, _, _ in REFUSALS])
def test_each_contradiction_is_refused_naming_the_arguments(suite, kwargs, error, says):
    with pytest.raises(error) as caught:
        open_bundle(**arguments(kwargs, suite))
    assert says in str(caught.value)
    assert type(caught.value) is error or error is VrfamError


def test_a_method_with_a_bundle_object_is_refused(tiny):
    with pytest.raises(UsageError, match="`bundle=` is a Bundle already"):
        open_bundle(tiny, method="vrfam")


def test_a_missing_folder_is_a_failed_input_not_a_usage_error(tmp_path):
    with pytest.raises(VrfamError) as caught:
        open_bundle(tmp_path / "nowhere")
    assert caught.value.exit_code == 1


# ---- every front end resolves the same way ------------------------------------------------
# (the CLI's flags, the same choice as API arguments)
CHOICES = [
    ([], {}),
    (["--method", "interfacegan"], {"method": "interfacegan"}),
    (["--bundle", "SUITE", "--method", "InterfaceGAN"], {"bundle": "SUITE",
                                                          "method": "interfacegan"}),
    (["--config", "tiny", "--seed", "2"], {"config": "tiny", "seed": 2}),
]


@pytest.mark.parametrize("flags,kwargs", CHOICES, ids=[" ".join(f) or "default" for f, _ in CHOICES])
def test_the_cli_the_api_and_the_server_open_the_same_bundle(suite, tmp_path, flags, kwargs):
    flags = [str(suite) if f == "SUITE" else f for f in flags]
    kwargs = arguments(kwargs, suite)
    # the CLI: what `vrfam-rt edit` records in the image it wrote
    result = CliRunner().invoke(main, ["edit", str(FACE), "--attr", "Smiling", "--no-align",
                                       "--backend", "eager", "--out", str(tmp_path), *flags])
    assert result.exit_code == 0, result.output
    [written] = tmp_path.glob("*.png")
    cli = read_provenance(written)["bundle_digest"]
    # the API
    pipe = EditPipeline.from_bundle(kwargs.pop("bundle", None), backend="eager", align=False,
                                    **kwargs)
    # the server: the record `serve` writes into the model configuration, read back as
    # the Triton model reads it
    option = dict(zip(flags[::2], flags[1::2]))
    config, seed = option.get("--config"), int(option.get("--seed", 0))
    bundle = bundle_from(option.get("--bundle"), config, seed, option.get("--method"))
    options = model_options(bundle, config, seed, prepare(bundle, "eager")[0], None, 4,
                            10**6, 10**6)
    [parameter] = edit_model_config(options, 4, 100)["parameters"]
    assert parameter["key"] == PARAMETER
    served = ServeOptions.from_json(parameter["value"]["string_value"])
    assert served == options
    assert cli == pipe.backend.bundle.digest == served.open_bundle().digest == bundle.digest


# ---- serve's typed options -------------------------------------------------------------------
def test_serve_options_name_the_model_by_absolute_folder_or_by_config_and_seed(
        suite, monkeypatch, tiny):
    monkeypatch.chdir(suite)
    saved = bundle_from("interfacegan", None, 0, None)        # a relative --bundle
    options = model_options(saved, None, 0, prepare(saved, "eager")[0], 2, 8, 100, 200)
    assert (options.bundle, options.config, options.seed) == (str(suite / "interfacegan"),
                                                              None, None)
    assert (options.backend, options.precision, options.device, options.threads) == (
        "eager", "fp32", "cpu", 2)
    assert (options.max_batch, options.max_pixels, options.max_bytes) == (8, 100, 200)
    random = bundle_from(None, "tiny", 5, None)
    options = model_options(random, "tiny", 5, prepare(random, "eager")[0], None, 8, 100, 200)
    assert (options.bundle, options.config, options.seed) == (None, "tiny", 5)
    assert options.open_bundle().digest == Bundle.random("tiny", seed=5).digest


def test_the_server_refuses_a_bundle_that_changed_after_serve_resolved_it(tmp_path, tiny):
    folder = tiny.save(tmp_path / "b")
    options = model_options(Bundle.load(folder), None, 0, prepare(tiny, "eager")[0], None, 4,
                            100, 200)
    Bundle.random("tiny", seed=1).save(folder, overwrite=True)
    with pytest.raises(VrfamError, match="changed after `vrfam-rt serve` resolved it"):
        options.open_bundle()


@pytest.mark.parametrize("text,says", [
    ("{", "is not JSON"),
    ('["a"]', "holds list, not the fields"),
    ('{"backend": "eager"}', "holds ['backend'], not the fields"),
])
def test_serve_options_from_another_version_are_refused_in_one_line(text, says):
    with pytest.raises(VrfamError) as caught:
        ServeOptions.from_json(text)
    assert says in str(caught.value) and "\n" not in str(caught.value)
