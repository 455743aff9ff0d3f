"""Experiments run their own code: a queued experiment imports the library from its own copy of
the repository, not from wherever the package was installed (nor from the workspace)."""

import json
import time

from conftest import run

WRITE = 'Path(path).write_text(json.dumps(_clean(obj), indent=2) + "\\n", encoding="utf-8")'


def marked(source: str, mark: str) -> str:
    """reporting.py with write_json adding ``"src": mark`` to every metrics file it writes."""
    assert WRITE in source
    return source.replace(WRITE, WRITE.replace("_clean(obj)", f'_clean({{**obj, "src": "{mark}"}})'))


def test_a_queued_experiment_records_the_results_of_its_own_src(tiny_repo):
    repo = tiny_repo
    reporting = repo / "src/voicegender/reporting.py"
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
