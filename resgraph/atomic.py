"""Output files: every command writes through here, so that outputs follow one set of rules.

- A file is written to a temporary file in the target's directory, then renamed over the target:
  a failure or a kill leaves no partial output and never touches what was there.
- An output never replaces an input of the same run (the spec, or any file it includes): RG075.
- Only a regular file (or nothing) may stand at the target: a directory, a device node, a FIFO or a
  socket is refused (RG076) rather than replaced.
- A replaced file keeps its permission bits (a 0600 file stays 0600); a new one gets 0666 less the umask.
- Temporary files and directories are named `.<target>.resgraph-<pid>-<token>.tmp`. SIGTERM removes
  them before the process ends; one left by a killed process (SIGKILL) is removed by the next run that
  writes the same target, once its process is gone.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import shutil
import signal
import stat
import tempfile
import threading
from pathlib import Path
from typing import Callable, Iterable, Iterator

from .diagnostics import Diagnostic, SpecError

_NAME_LIMIT = 100   # of the target's name inside a temporary name, which must stay under 255 bytes
_TEMPORARY = re.compile(r"^\.(?P<name>.+)\.resgraph-(?P<pid>[0-9]+)-[0-9a-f]+\.tmp$", re.DOTALL)


class OutputError(SpecError):
    """An output path that resgraph refuses to write (RG075, RG076): reported like a diagnostic, exit 2."""

    def __init__(self, code: str, message: str, help: str | None = None) -> None:
        super().__init__([Diagnostic(code, message, help=help)])


class Terminated(SystemExit):
    """Raised in the main thread by SIGTERM while an output is being written, so that cleanup runs."""

    def __init__(self) -> None:
        super().__init__(128 + signal.SIGTERM)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _same_file(first: os.stat_result, second: os.stat_result) -> bool:
    return (first.st_dev, first.st_ino) == (second.st_dev, second.st_ino)


def check_output(path: Path, inputs: Iterable[str | os.PathLike] = ()) -> int:
    """Refuse an output that would replace an input or a non-regular file; returns the mode to give it.

    Raises OutputError (RG075, RG076), or FileNotFoundError when the directory does not exist."""
    directory = path.parent if str(path.parent) else Path(".")
    if not directory.is_dir():
        raise FileNotFoundError(f"the directory `{directory}` does not exist")
    try:
        existing = os.stat(path)          # follows a link: what the user would overwrite
    except (FileNotFoundError, NotADirectoryError):
        return 0o666 & ~_umask()
    except OSError as exc:
        raise OutputError("RG076", f"cannot write `{path}`: {exc.strerror or exc}") from None
    if not stat.S_ISREG(existing.st_mode):
        kind = "a directory" if stat.S_ISDIR(existing.st_mode) else "not a regular file (a device, FIFO or socket)"
        raise OutputError("RG076", f"cannot write `{path}`: it is {kind}",
                          help="name a new or regular file as the output; resgraph never replaces other kinds")
    for name in inputs:
        try:
            same = _same_file(existing, os.stat(name))
        except (OSError, ValueError):
            continue
        if same:
            what = "an input of this run" if os.fspath(name) == os.fspath(path) else f"the input `{name}` of this run"
            raise OutputError("RG075", f"cannot write `{path}`: it is {what} (the spec or a file it reads)",
                              help="choose another output path; writing there would destroy the spec")
    return stat.S_IMODE(existing.st_mode)


def _temporary_name(path: Path) -> Path:
    return path.with_name(f".{path.name[:_NAME_LIMIT]}.resgraph-{os.getpid()}-{secrets.token_hex(4)}.tmp")


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:   # e.g. another user's process: alive
        return True
    return True


def remove_stale_temporaries(path: Path) -> list[Path]:
    """Remove the temporary files and directories that killed runs left for `path`; returns them."""
    directory = path.parent if str(path.parent) else Path(".")
    removed = []
    try:
        names = os.listdir(directory)
    except OSError:
        return removed
    for name in names:
        match = _TEMPORARY.match(name)
        if match is None or match["name"] != path.name[:_NAME_LIMIT] or _alive(int(match["pid"])):
            continue
        stale = directory / name
        try:
            if stale.is_dir() and not stale.is_symlink():
                shutil.rmtree(stale)
            else:
                stale.unlink()
            removed.append(stale)
        except OSError:
            pass
    return removed


@contextlib.contextmanager
def cleaned_on_termination() -> Iterator[None]:
    """While this runs, SIGTERM raises `Terminated` (in the main thread), so `finally` blocks remove temporaries."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def terminate(signum, frame):
        raise Terminated()

    previous = signal.signal(signal.SIGTERM, terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def write_atomically(path: Path, data: bytes, *, inputs: Iterable[str | os.PathLike] = ()) -> Path:
    """Write `data` to `path` by the rules above. Raises OutputError, or FileNotFoundError when the
    directory does not exist."""
    path = Path(path)
    mode = check_output(path, inputs)
    remove_stale_temporaries(path)
    temporary = _temporary_name(path)
    with cleaned_on_termination():
        try:
            handle = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o600)
            with os.fdopen(handle, "wb") as file:
                file.write(data)
            os.chmod(temporary, mode)
            _pause_for_tests()
            os.replace(temporary, path)
        except BaseException:
            temporary.unlink(missing_ok=True)
            raise
    return path


def write_through_directory(path: Path, save: Callable[[str], None], *,
                            inputs: Iterable[str | os.PathLike] = ()) -> Path:
    """For writers that need a path (torch.export.save, torch.onnx.export): `save(file)` writes into a
    temporary directory in the target's directory, which is also the temporary directory of anything it
    makes through `tempfile`; the file then replaces `path`. Nothing is left behind on an error or SIGTERM."""
    path = Path(path)
    mode = check_output(path, inputs)
    remove_stale_temporaries(path)
    directory = _temporary_name(path)
    with cleaned_on_termination():
        os.mkdir(directory, 0o700)
        previous_tempdir = tempfile.tempdir
        try:
            tempfile.tempdir = str(directory)
            written = directory / ("output" + path.suffix)
            save(str(written))
            _pause_for_tests()
            os.chmod(written, mode)
            os.replace(written, path)
        finally:
            tempfile.tempdir = previous_tempdir
            shutil.rmtree(directory, ignore_errors=True)
    return path


PAUSE_VARIABLE = "RESGRAPH_TEST_PAUSE_BEFORE_RENAME"


def _pause_for_tests() -> None:
    """A test hook: with $RESGRAPH_TEST_PAUSE_BEFORE_RENAME set to seconds, say so on stderr and wait with the
    temporary file written, so a test can send a signal at that moment deterministically."""
    seconds = os.environ.get(PAUSE_VARIABLE)
    if seconds:
        import sys
        import time

        print("resgraph: paused before rename", file=sys.stderr, flush=True)
        time.sleep(float(seconds))
