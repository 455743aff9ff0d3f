"""dvc.yaml matches the code: each stage lists the src modules it imports (transitively) and the
params keys it reads, so that a change to either reruns it (and DVC's cache is never stale)."""

import ast
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"
STAGES = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]


def module_file(name: str) -> Path | None:
    """The file of a module of this repository: voicegender.* under src/, stage helpers under stages/."""
    if name.startswith("voicegender"):
        parts = name.split(".")
        f = SRC.joinpath(*parts).with_suffix(".py")
        if f.is_file():
            return f
        init = SRC.joinpath(*parts, "__init__.py")
        return init if init.is_file() else None
    f = ROOT / "stages" / f"{name}.py"
    return f if f.is_file() else None


def imports_of(path: Path) -> set[str]:
    """Modules ``path`` imports anywhere (top level or inside functions), as dotted names."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module)
            out |= {f"{node.module}.{a.name}" for a in node.names}  # from voicegender.corpora import switch
    return out


def local_closure(script: Path) -> set[Path]:
    """The repository's files ``script`` runs: itself and every local module imported, transitively.
    A package __init__ is counted when it holds code (imports); ours holds only the version."""
    seen, todo = set(), [script]
    while todo:
        f = todo.pop()
        if f in seen:
            continue
        seen.add(f)
        for name in imports_of(f):
            g = module_file(name)
            if g is not None and (g.name != "__init__.py" or imports_of(g)):
                todo.append(g)
    return seen


def chain(node) -> list[str] | None:
    """``params.a.b`` (typed settings) or ``params["a"]["b"]`` -> ["params", "a", "b"]; None for
    anything else. pydantic's own methods (``.model_dump()`` ...) read the part they are called on."""
    keys = []
    while isinstance(node, (ast.Subscript, ast.Attribute)):
        if isinstance(node, ast.Attribute):
            if not node.attr.startswith("model_"):
                keys.append(node.attr)
            node = node.value
            continue
        if not (isinstance(node.slice, ast.Constant) and isinstance(node.slice.value, str)):
            return None
        keys.append(node.slice.value)
        node = node.value
    if isinstance(node, ast.Name):
        return [node.id] + keys[::-1]
    return None


def params_read(script: Path) -> set[str]:
    """Dotted params keys a stage script reads from ``params`` (load_params()'s result), following
    names bound to a part of it (``data = params["data"]``; ``cfg = data["libritts"]``). Reading a
    part whole (passing it on, comparing it) reads every key under it."""
    tree = ast.parse(script.read_text())
    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    aliases = {"params": ""}
    changed = True
    while changed:  # aliases of aliases, in any order
        changed = False
        for node in ast.walk(tree):
            if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
                c = chain(node.value)
                if c and c[0] in aliases and node.targets[0].id not in aliases:
                    aliases[node.targets[0].id] = ".".join(filter(None, [aliases[c[0]], *c[1:]]))
                    changed = True
    reads, unresolved = set(), []
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and node.id in aliases and isinstance(node.ctx, ast.Load):
            # walk up the subscript chain rooted here
            top = node
            while isinstance(parents.get(top), (ast.Subscript, ast.Attribute)) and parents[top].value is top:
                top = parents[top]
            c = chain(top)
            if c is None:
                unresolved.append(ast.unparse(top))
                continue
            parent = parents.get(top)
            if (
                isinstance(parent, ast.Assign)
                and parent.value is top
                and isinstance(parent.targets[0], ast.Name)
                and parent.targets[0].id in aliases
            ):
                continue  # binds an alias: its uses count
            key = ".".join(filter(None, [aliases[c[0]], *c[1:]]))
            if key:  # `params` itself handed on (e.g. to a helper in this file, read there)
                reads.add(key)
    assert not unresolved, f"{script.name}: params read with a computed key: {unresolved}"
    return reads


def script_of(stage: dict) -> Path:
    cmd = stage["cmd"].split()
    assert cmd[0] == "python" and cmd[1].startswith("stages/"), stage["cmd"]
    return ROOT / cmd[1]


def covered(key: str, listed: list[str]) -> bool:
    return any(key == p or key.startswith(p + ".") for p in listed)


@pytest.mark.parametrize("name", sorted(STAGES))
def test_stage_lists_every_module_it_imports(name):
    stage = STAGES[name]
    deps = set(stage.get("deps", []))
    needed = {str(f.relative_to(ROOT)) for f in local_closure(script_of(stage))}
    missing = sorted(d for d in needed if not any(d == x or d.startswith(x.rstrip("/") + "/") for x in deps))
    assert not missing, f"stage {name}: dvc.yaml deps lack {missing}"
    unused = sorted(d for d in deps if d.startswith(("src/", "stages/")) and d.endswith(".py") and d not in needed)
    assert not unused, f"stage {name}: dvc.yaml deps list {unused}, which it does not import (reruns for nothing)"


@pytest.mark.parametrize("name", sorted(STAGES))
def test_stage_lists_every_param_it_reads(name):
    stage = STAGES[name]
    listed = [p if isinstance(p, str) else next(iter(p)) for p in stage.get("params", [])]
    reads = params_read(script_of(stage))
    missing = sorted(k for k in reads if not covered(k, listed))
    assert not missing, f"stage {name}: dvc.yaml params lack {missing}"


def test_the_checks_can_fail(tmp_path):
    script = tmp_path / "s.py"
    script.write_text(
        "from voicegender.corpora import switch\nfrom voicegender.params import load_params\n"
        "params = load_params()\ndata = params['data']\ncfg = data['libritts']\n"
        "x = cfg['base_url'], params['tune']['asha']['grace_period']\nprint(params['lr'])\n"
        "f = params.features\ny = f.augment.copies, params.model.model_dump(mode='json')\n"
    )
    assert params_read(script) == {
        "data.libritts.base_url",
        "tune.asha.grace_period",
        "lr",
        "features.augment.copies",
        "model",
    }
    files = {str(f.relative_to(ROOT)) for f in local_closure(script) if f != script}
    assert {"src/voicegender/corpora/switch.py", "src/voicegender/params.py", "src/voicegender/errors.py"} <= files
    assert not covered("tune.asha.grace_period", ["tune.space", "lr"]) and covered("tune.asha.grace_period", ["tune"])
    script.write_text("params = {}\nfor k in ('lr',):\n    print(params[k])\n")
    with pytest.raises(AssertionError, match="computed key"):
        params_read(script)


@pytest.mark.parametrize("name", sorted(STAGES))
def test_stage_removes_every_output_dvc_records_when_it_fails(name):
    """A failed or interrupted stage removes its OUTPUTS: they must cover dvc.yaml's outs,
    metrics and plots (a file or the folder holding it)."""
    stage = STAGES[name]
    tree = ast.parse(script_of(stage).read_text())
    outputs = next(
        ast.literal_eval(n.value)
        for n in tree.body
        if isinstance(n, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "OUTPUTS" for t in n.targets)
    )
    recorded = [
        o if isinstance(o, str) else next(iter(o)) for kind in ("outs", "metrics", "plots") for o in stage.get(kind, [])
    ]
    missing = [r for r in recorded if not any(r == o or r.startswith(o.rstrip("/") + "/") for o in outputs)]
    assert not missing, f"stage {name}: OUTPUTS lacks {missing}"
