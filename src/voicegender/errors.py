"""Expected failures, and how a command reports them.

An expected failure is one the user can fix (a bad param, a checksum mismatch, a server that
does not answer, a bad manifest, an unreadable archive, Ctrl-C): it is reported as a few lines
naming the key, file or URL and what to do, without a traceback, and the command exits
non-zero. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path
from typing import Callable, Iterable


class UserError(Exception):
    """An expected failure: its message names what is wrong and what to do about it."""


class MissingInputError(UserError, FileNotFoundError):
    """A file or folder the user pointed at does not exist."""


class CorpusError(UserError):
    """A corpus cannot be read as asked; the message says which file and why."""


EXIT_ERROR = 1
EXIT_INTERRUPTED = 130  # the shell's code for a command ended by SIGINT


def run_command(main: Callable[[], None], *, name: str, outputs: Iterable[str | Path] = ()) -> None:
    """Run ``main``; on any failure remove ``outputs`` (files or folders), so that nothing half
    written is left behind, and exit non-zero. Expected failures (:class:`UserError` and the
    exception types that subclass it) and Ctrl-C print one message; other errors re-raise."""
    _children_import_this_library()
    try:
        main()
    except SystemExit as e:
        if e.code not in (None, 0):
            _remove(outputs)
        raise
    except KeyboardInterrupt:
        _remove(outputs)
        print(
            f"{name}: interrupted; nothing was recorded (run it again to redo this step)", file=sys.stderr, flush=True
        )
        sys.exit(EXIT_INTERRUPTED)
    except UserError as e:
        _remove(outputs)
        print(f"{name}: error: {e}", file=sys.stderr, flush=True)
        sys.exit(EXIT_ERROR)
    except BaseException:
        _remove(outputs)
        raise


def _children_import_this_library() -> None:
    """Processes the command starts (Ray's trial workers, feature workers) import ``voicegender``
    from where this process did, not from wherever the package happens to be installed."""
    src = str(Path(__file__).resolve().parents[1])
    rest = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p and p != src]
    os.environ["PYTHONPATH"] = os.pathsep.join([src] + rest)


def _remove(outputs: Iterable[str | Path]) -> None:
    for out in outputs:
        p = Path(out)
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p, ignore_errors=True)
        else:
            p.unlink(missing_ok=True)
