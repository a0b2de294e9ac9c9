"""The package's shape: folders by concern, small files, and imports that only point down.

Layers, lowest first: `base` (TensorFlow-free infrastructure) < `config` < `data` <
`engine` (the tf_keras machinery) < `model` (the mathematics) < `plots`, `serving`,
`training` < `cli`. A module may import its own layer or a lower one, never a higher one,
and no chain of imports (function-level ones included) may come back to where it began.
"""

import ast
import os

import pytest

PACKAGE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tfvae")

LAYERS = {
    "base": 0,
    "config": 1,
    "data": 2,
    "engine": 3,
    "model": 4,
    "plots": 5,
    "serving": 5,
    "training": 5,
    "cli": 6,
}
MAX_TOP_MODULES = 8
MIN_FOLDERS = 4
MAX_FILE_LINES = 500
MAX_FUNCTION_LINES = 80
MAX_CLASS_LINES = 400
MAX_CLI_FILE_LINES = 400


def _modules():
    """{dotted name: path} of every module of the package."""
    found = {}
    for folder, _, files in os.walk(PACKAGE):
        for name in files:
            if name.endswith(".py"):
                path = os.path.join(folder, name)
                rel = os.path.relpath(path, os.path.dirname(PACKAGE))[:-3].replace(os.sep, ".")
                found[rel[: -len(".__init__")] if rel.endswith(".__init__") else rel] = path
    return found


MODULES = _modules()


def _imports(path):
    """The tfvae modules `path` imports, anywhere in it (not under `if TYPE_CHECKING:`)."""
    tree = ast.parse(open(path, encoding="utf-8").read())
    skipped = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skipped.update(id(n) for n in ast.walk(node))
    names = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{a.name}" for a in node.names)
    return {n for n in names if n in MODULES and n.startswith("tfvae.") and n != "tfvae"}


def _layer(module):
    parts = module.split(".")
    return LAYERS.get(parts[1]) if len(parts) > 1 else None


GRAPH = {m: _imports(p) for m, p in MODULES.items()}


def test_folders_by_concern():
    top = [
        m
        for m in MODULES
        if m.count(".") == 1 and not os.path.basename(MODULES[m]) == "__init__.py"
    ]
    folders = [m for m in MODULES if MODULES[m].endswith("__init__.py") and m != "tfvae"]
    assert len(top) <= MAX_TOP_MODULES, sorted(top)
    assert len(folders) >= MIN_FOLDERS, sorted(folders)
    unknown = {m.split(".")[1] for m in MODULES if m != "tfvae"} - set(LAYERS) - {"__main__"}
    assert not unknown, f"modules outside the layers: {sorted(unknown)}"


def test_no_import_points_up():
    upward = [
        f"{m} (layer {_layer(m)}) imports {t} (layer {_layer(t)})"
        for m, targets in GRAPH.items()
        for t in targets
        if _layer(m) is not None and _layer(t) is not None and _layer(t) > _layer(m)
    ]
    assert not upward, "\n".join(upward)


def test_no_import_circle():
    # a package imports its submodules by name only: `from tfvae.x import y` names both
    # tfvae.x and tfvae.x.y, so edges into a package's own __init__ are left out
    edges = {m: {t for t in ts if not m.startswith(t + ".")} for m, ts in GRAPH.items()}
    state, circles = {}, []

    def visit(node, stack):
        state[node] = "open"
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == "open":
                circles.append(" -> ".join(stack[stack.index(nxt) :] + [nxt]))
            elif nxt not in state:
                visit(nxt, stack + [nxt])
        state[node] = "done"

    for module in sorted(edges):
        if module not in state:
            visit(module, [module])
    assert not circles, "\n".join(circles)


def _sizes():
    for module, path in sorted(MODULES.items()):
        source = open(path, encoding="utf-8").read()
        yield module, path, source.count("\n"), ast.parse(source)


@pytest.mark.parametrize("kind", ["file", "function", "class"])
def test_size_limits(kind):
    over = []
    for module, path, lines, tree in _sizes():
        if kind == "file":
            limit = MAX_CLI_FILE_LINES if module.startswith("tfvae.cli") else MAX_FILE_LINES
            if lines > limit:
                over.append(f"{module}: {lines} lines > {limit}")
            continue
        types = (ast.FunctionDef, ast.AsyncFunctionDef) if kind == "function" else (ast.ClassDef,)
        limit = MAX_FUNCTION_LINES if kind == "function" else MAX_CLASS_LINES
        for node in ast.walk(tree):
            if isinstance(node, types):
                length = node.end_lineno - node.lineno + 1
                if length > limit:
                    over.append(f"{module}.{node.name}: {length} lines > {limit}")
    assert not over, "\n".join(over)


def test_layering_check_sees_a_violation():
    """The checks above are not vacuous: the graph has edges, and an upward one is caught."""
    assert sum(len(t) for t in GRAPH.values()) > 50
    assert _layer("tfvae.base.atomic") < _layer("tfvae.cli.app")
    assert "tfvae.base.atomic" in GRAPH["tfvae.base.configs"]


def test_old_module_names_fail_naming_the_new_ones():
    import importlib

    import tfvae

    for old, new in tfvae.MOVED.items():
        assert new in MODULES, f"MOVED names {new}, which does not exist"
        assert old not in MODULES
        with pytest.raises(ModuleNotFoundError, match=f"^{old} moved to {new}$"):
            importlib.import_module(old)
    # `from tfvae import atomic`, `from tfvae.data import load_default`: the same one line
    for statement, line in [
        ("from tfvae import xla_cache", "tfvae.xla_cache moved to tfvae.engine.xla_cache"),
        (
            "from tfvae import export; assert callable(export); import tfvae.export",
            "tfvae.export moved to tfvae.serving.export",
        ),
        ("import tfvae.atomic", "tfvae.atomic moved to tfvae.base.atomic"),
        (
            "from tfvae.data import load_default",
            "tfvae.data.load_default moved to tfvae.data.datasets.load_default",
        ),
        (
            "from tfvae.serving import predict_request",
            "tfvae.serving.predict_request moved to tfvae.serving.client.predict_request",
        ),
        ("from tfvae.model import VAE", "tfvae.model.VAE moved to tfvae.model.vae.VAE"),
    ]:
        with pytest.raises(ImportError) as caught:
            exec(statement, {})
        assert str(caught.value) == line, statement
    import tfvae.serving

    with pytest.raises(ImportError, match=r"^tfvae\.serving\.rest_body moved to "):
        tfvae.serving.rest_body  # noqa: B018
    with pytest.raises(AttributeError, match="has no attribute 'no_such_name'"):
        tfvae.serving.no_such_name  # noqa: B018
    from tfvae.data import choice  # a submodule still imports by name, without TensorFlow
    from tfvae.serving import client

    assert callable(client.rest_body) and callable(choice.choose_dataset)
