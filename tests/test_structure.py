"""The layout keeps its promises: a one-way import graph, private names stay private,
run-time code reaches build-time code only through the runtime's build-on-demand step."""
import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# vrfam_rt's subpackages that live beside it (setup.cfg's package_dir)
PACKAGES = {"vrfam_rt": "vrfam_rt", "vrfam_rt.training": "training",
            "vrfam_rt.export": "export", "vrfam_rt.engines": "engines",
            "vrfam_rt.calibration": "calibration", "vrfam_rt.benchmarks": "benchmarks"}
BUILD_TIME = ("vrfam_rt.export", "vrfam_rt.engines", "vrfam_rt.calibration",
              "vrfam_rt.training")
RUN_TIME = ("vrfam_rt.backends", "vrfam_rt.pipeline", "vrfam_rt.inversion", "vrfam_rt.images",
            "vrfam_rt.align")


def modules() -> dict[str, Path]:
    found = {}
    for package, folder in PACKAGES.items():
        for path in (ROOT / folder).rglob("*.py"):
            parts = [p for p in path.relative_to(ROOT / folder).with_suffix("").parts
                     if p != "__init__"]
            found[".".join([package, *parts])] = path
    return found


MODULES = modules()


def imports(path: Path):
    """(imported module, names taken from it) for every import statement in the file,
    at module level or inside functions: a deferred import is still a dependency."""
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, ()
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            submodules = [a.name for a in node.names if f"{node.module}.{a.name}" in MODULES]
            for name in submodules:
                yield f"{node.module}.{name}", ()
            names = tuple(a.name for a in node.names if a.name not in submodules)
            if names:
                yield node.module, names


def graph() -> dict[str, set[str]]:
    edges = {name: set() for name in MODULES}
    for name, path in MODULES.items():
        for target, _ in imports(path):
            if target in MODULES and target != name:
                edges[name].add(target)
    return edges


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def test_the_walk_sees_the_whole_package():
    assert {"vrfam_rt.cli", "vrfam_rt.cli.common", "vrfam_rt.on_demand", "vrfam_rt.contract",
            "vrfam_rt.export.lowering", "vrfam_rt.engines.build",
            "vrfam_rt.backends.trt"} <= set(MODULES)
    assert "vrfam_rt.on_demand" in graph()["vrfam_rt.pipeline"]


def test_the_import_graph_has_no_cycles():
    assert cycles(graph()) == []


def test_the_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_module_takes_another_modules_private_names():
    taken = [(name, target, n) for name, path in MODULES.items()
             for target, names in imports(path) if target.startswith("vrfam_rt")
             for n in names if n.startswith("_") and not n.startswith("__")]
    assert taken == []


def _reaches(start: str, edges, stop=()) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        for w in edges[todo.pop()]:
            if w not in seen and w not in stop:
                seen.add(w)
                todo.append(w)
    return seen


@pytest.mark.parametrize("module", RUN_TIME)
def test_run_time_code_reaches_build_time_code_only_through_the_runtime(module):
    edges = graph()
    starts = [m for m in MODULES if m == module or m.startswith(module + ".")]
    reached = set().union(*(_reaches(m, edges, stop={"vrfam_rt.on_demand"}) for m in starts))
    assert sorted(m for m in reached if m.startswith(BUILD_TIME)) == []


def test_backends_import_nothing_from_engines():
    for name, path in MODULES.items():
        if name.startswith("vrfam_rt.backends"):
            assert not [t for t, _ in imports(path) if t.startswith("vrfam_rt.engines")], name


def test_cli_modules_stand_on_common_not_on_each_other():
    for name, path in MODULES.items():
        if name.startswith("vrfam_rt.cli.") and name != "vrfam_rt.cli.common":
            others = {t for t, _ in imports(path) if t.startswith("vrfam_rt.cli")}
            assert others <= {"vrfam_rt.cli.common"}, (name, others)


def stage_calls(source: str) -> list[tuple[str, int]]:
    """(stage, line) of every call `x.encoder(...)`, `x.transformer(...)` or
    `x.generator(...)` in Python source."""
    from vrfam_rt.contract import STAGE_NAMES

    return [(node.func.attr, node.lineno) for node in ast.walk(ast.parse(source))
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
            and node.func.attr in STAGE_NAMES]


def test_front_ends_edit_through_the_pipeline_never_a_stage():
    """The CLI and the server call EditPipeline; a stage call there would be a second
    edit path (only `bench` and `profile`, in benchmarks/, time the stages directly)."""
    found = {name: stage_calls(path.read_text()) for name, path in MODULES.items()
             if name.startswith(("vrfam_rt.cli", "vrfam_rt.serving"))}
    assert len(found) > 10 and {k: v for k, v in found.items() if v} == {}


def test_the_stage_call_finder_finds_one():
    assert stage_calls("def edit(runner, x):\n    return runner.generator(runner.encoder(x))"
                       ) == [("generator", 2), ("encoder", 2)]


def test_the_environment_is_read_at_the_cli_edge_only():
    """...and by the cache root's default, which the API shares with the CLI
    ($VRFAM_RT_CACHE: one cache, whichever front end fills it)."""
    for name, path in MODULES.items():
        if not name.startswith("vrfam_rt.cli") and name != "vrfam_rt.on_demand":
            assert "os.environ" not in path.read_text(), name


BACKEND_NAMES = {"eager", "ort", "openvino", "trt"}
# names whose values share spellings with backends but are other vocabularies:
# calibration targets (trt, cpu, openvino) and the cache's folder kinds
OTHER_VOCABULARIES = {"target", "kind"}


def backend_decisions(source: str) -> list[tuple[int, str]]:
    """(line, code) of every comparison with a backend name (`backend == "trt"`,
    `"trt" in backends`) and every dict literal keyed by backend names: a decision
    about backends that belongs to their registry (vrfam_rt/backends/registry.py)."""
    def names(node) -> set[str]:
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            return {node.value} & BACKEND_NAMES
        if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
            return set().union(*map(names, node.elts)) if node.elts else set()
        return set()

    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Compare):
            sides = [node.left, *node.comparators]
            subjects = [side for side in sides if not names(side)]
            if any(map(names, sides)) and not all(
                    isinstance(side, ast.Name) and side.id in OTHER_VOCABULARIES
                    for side in subjects):
                found.append((node.lineno, ast.unparse(node)))
        elif isinstance(node, ast.Dict):      # keyed by backend names, and by nothing else
            keys = [k.value for k in node.keys if isinstance(k, ast.Constant)]
            if len(keys) >= 2 and len(keys) == len(node.keys) and set(keys) <= BACKEND_NAMES:
                found.append((node.lineno, ast.unparse(node)[:60]))
    return found


def test_backend_decisions_live_in_the_backends_package():
    """What each backend runs, where and from what is declared once (the registry);
    everything else asks it instead of comparing names."""
    found = {name: backend_decisions(path.read_text()) for name, path in MODULES.items()
             if not name.startswith("vrfam_rt.backends")}
    assert len(found) > 50 and {k: v for k, v in found.items() if v} == {}


@pytest.mark.parametrize("source, found", [
    ('if backend == "trt":\n    pass', [(1, "backend == 'trt'")]),
    ('x = "eager" in backends', [(1, "'eager' in backends")]),
    ('x = runner.name != "openvino"', [(1, "runner.name != 'openvino'")]),
    ('x = {"ort": 1, "trt": 2}', [(1, "{'ort': 1, 'trt': 2}")]),
    ('x = target == "openvino"', []),            # a calibration target, not a backend
    ('x = {"trt": 1, "cpu": 2, "openvino": 3}', []),   # calibration targets
    ('x = precision == "fp16"', []),
])
def test_the_backend_decision_finder_finds_them(source, found):
    assert backend_decisions(source) == found


def test_every_package_folder_ships():
    """A package setup.cfg does not list is missing from wheels (an editable install
    hides that: it maps the whole vrfam_rt folder)."""
    import configparser

    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg")
    listed = set(config["options"]["packages"].split())
    mapped = dict(line.split(" = ") for line in
                  config["options"]["package_dir"].strip().splitlines())
    assert mapped == {k: v for k, v in PACKAGES.items() if k != "vrfam_rt"}
    packages = {name for name, path in MODULES.items() if path.name == "__init__.py"}
    assert packages == listed


@pytest.mark.parametrize("package", [p for p in PACKAGES if p != "vrfam_rt"])
def test_tools_that_know_no_package_dir_find_the_stage_folders(package):
    """vrfam_rt/<stage> is a relative link to the top-level folder, so mypy, pyright,
    editors and `python -m vrfam_rt` from a checkout resolve vrfam_rt.<stage>.* there."""
    link = ROOT / "vrfam_rt" / package.split(".")[1]
    assert link.is_symlink() and not Path(link.readlink()).is_absolute()
    assert link.resolve() == (ROOT / PACKAGES[package]).resolve()
