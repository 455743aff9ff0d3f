"""Experiments run their own code: a queued experiment imports the library from its own copy of
the repository, not from wherever the package was installed (nor from the workspace)."""

import csv
import io
import json
import re
import runpy
import shlex
import time
from pathlib import Path

import pytest
import yaml

from conftest import run

ROOT = Path(__file__).resolve().parents[1]


def marked(source: str, mark: str) -> str:
    """reports.py's ``source`` with a ``write_json`` that adds ``"src": mark`` to every metrics file:
    appended to the module, so that it holds whatever the module's lines are, and fails loudly (a
    NameError on import, the stage fails) if ``write_json`` ever leaves it."""
    return source + (
        "\n\n# appended by tests/test_experiments.py: each metrics file names the copy of the library that wrote it\n"
        "_unmarked_write_json = write_json\n\n\n"
        "def write_json(path, obj):\n"
        f"    _unmarked_write_json(path, {{**obj, 'src': {mark!r}}})\n"
    )


def test_the_mark_is_written(tmp_path):
    """The mechanism the queued-experiment test relies on, in this process (fast)."""
    source = (ROOT / "src/voicegender/evaluation/reports.py").read_text(encoding="utf-8")
    (tmp_path / "reports.py").write_text(marked(source, "here"), encoding="utf-8")
    runpy.run_path(str(tmp_path / "reports.py"))["write_json"](tmp_path / "m.json", {"a": 1.0})
    assert json.loads((tmp_path / "m.json").read_text()) == {"a": 1.0, "src": "here"}


@pytest.mark.slow  # a dvc queue run of the tiny pipeline
def test_a_queued_experiment_records_the_results_of_its_own_src(tiny_repo):
    repo = tiny_repo
    reporting = repo / "src/voicegender/evaluation/reports.py"
    original = reporting.read_text()
    reporting.write_text(marked(original, "queued"))
    run(["dvc", "exp", "run", "--queue", "-n", "own-src", "label"], repo)
    reporting.write_text(marked(original, "workspace"))  # the workspace moves on meanwhile
    run(["dvc", "queue", "start"], repo)
    deadline = time.time() + 300
    while time.time() < deadline:
        status = run(["dvc", "queue", "status"], repo).stdout
        if "own-src" in status and ("Success" in status or "Failed" in status):
            break
        time.sleep(2)
    run(["dvc", "queue", "stop", "--kill"], repo, check=False)
    assert "Success" in status, status + run(["dvc", "queue", "logs", "own-src"], repo, check=False).stdout
    refs = run(["git", "for-each-ref", "--format=%(refname)", "refs/exps"], repo).stdout.split()
    ref = next(r for r in refs if r.endswith("/own-src"))
    data = json.loads(run(["git", "show", f"{ref}:metrics/data.json"], repo).stdout)
    assert data.get("src") == "queued", "the queued experiment ran another copy of the library"


def flat_keys(tree: dict, prefix: str = "") -> list[str]:
    """``{"a": {"b": 1}}`` -> ``["a.b"]``: a metrics file's keys as `dvc exp show` names them."""
    return [
        k
        for name, v in tree.items()
        for k in (flat_keys(v, f"{prefix}{name}.") if isinstance(v, dict) else [prefix + name])
    ]


def readme_compare_commands() -> list[str]:
    """The commands of README's `<!-- compare:start -->` block, comments stripped."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    block = text.split("<!-- compare:start -->", 1)[1].split("<!-- compare:end -->", 1)[0]
    lines = [line for line in block.splitlines() if line.startswith(("dvc ", "git "))]
    return [shlex.split(line, comments=True) for line in lines]


@pytest.mark.slow
def test_readme_comparison_commands_run_and_fit_200_columns(tiny_repo):
    """README's experiment comparison, as written: two named experiments with the committed params
    restored between them; `dvc exp diff` and README's `dvc exp show` fit a 200-column terminal
    and show the params that changed and the metrics one compares."""
    repo = tiny_repo
    run(["dvc", "repro"], repo)
    run(["git", "add", "-A"], repo)
    run(["git", "commit", "-qm", "baseline run"], repo)
    commands = readme_compare_commands()
    assert [c[:3] for c in commands].count(["dvc", "exp", "run"]) == 2
    outputs = []
    for cmd in commands:
        if cmd[:3] == ["dvc", "plots", "diff"]:
            cmd = [*cmd, "-o", "plots_diff"]
        proc = run(cmd, repo)
        outputs.append((" ".join(cmd[:3]), proc.stdout))
        if cmd[:3] == ["git", "checkout", "HEAD"]:
            assert "lr: tuned" in (repo / "params.yaml").read_text()  # the committed params are back
    compared = [(name, out) for name, out in outputs if name in ("dvc exp diff", "dvc exp show")]
    assert [name for name, _ in compared] == ["dvc exp diff", "dvc exp show", "dvc exp show"]
    for name, out in compared:
        width = max(len(line) for line in out.splitlines())
        assert width <= 200, f"`{name}` is {width} columns wide:\n{out}"
    (_, diff), (_, show), (_, conditions) = compared
    for out in (diff, show):
        assert "lr" in out and "weight_decay" in out and "balanced_accuracy" in out, out
    assert "room." not in show, show  # the robustness columns: the second view's
    # what changed, column by column (a bare `--only-changed`, ~700 columns: docs/dvc.md says why)
    changed = next(csv.reader(io.StringIO(run(["dvc", "exp", "show", "--only-changed", "--csv"], repo).stdout)))
    test_scores = {"metrics/evaluate.json:accuracy", "balanced_accuracy", "roc_auc", "f1", "speaker_accuracy"}
    assert test_scores & set(changed), changed  # the experiments changed the test scores ...
    shown = set(show.splitlines()[1].split())
    assert test_scores & set(changed) <= shown, show  # ... and the first view shows each that changed
    conditions_shown = set(conditions.splitlines()[1].split())
    params = yaml.safe_load((repo / "params.yaml").read_text())
    assert {f"{c}.accuracy" for c in params["robustness"]["conditions"]} <= conditions_shown, conditions
    assert "lr-3e-4" in conditions and "wd-0.01" in conditions, conditions
    # the metrics files hold what one compares: no details (intervals, per class, counts) listed
    files = json.loads(run(["dvc", "metrics", "show", "--json"], repo).stdout)[""]["data"]
    listed = [f"{path}:{key}" for path, m in files.items() for key in flat_keys(m["data"])]
    details = [k for k in listed if re.search(r"ci95|per_class|recordings|threshold|calibration", k)]
    assert not details, details
    assert (repo / "plots_diff/index.html").is_file()
