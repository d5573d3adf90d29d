"""The files a run reads and writes (issue 14, sections 2 and 4): includes confined to the project, only
regular files read (sizes checked before reading), files that are not specs never quoted; outputs that
never replace an input or a non-regular file, keep a replaced file's mode, and leave no temporaries."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

import resgraph
from resgraph import atomic
from resgraph.cli import main
from resgraph.source import MAX_FILE_BYTES, FileProblem, read_spec_bytes

from .conftest import ROOT, spec_text

NET = """
    resgraph: 1
    {head}
    input: [8]
    nodes:
      fc: {{op: linear, out: 2}}
"""
LIBRARY = """
    resgraph: 1
    blocks:
      lin:
        nodes:
          fc: {op: linear, out: 8}
"""
SECRET = "root:$6$c2VjcmV0:19000:0:99999:7:::\ndaemon:*:19000:0:99999:7:::\n"


def write(path: Path, text: str) -> Path:
    path.write_text(spec_text(text))
    return path


def spec_including(tmp_path: Path, target: str, name: str = "spec.yaml") -> Path:
    return write(tmp_path / name, NET.format(head=f"include: [{target!r}]"))


def errors(path: Path, **kwargs) -> list:
    return [d for d in resgraph.validate(path, **kwargs) if d.is_error]


def run_cli(*args: str, cwd: Path) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False, env={"NO_COLOR": "1"})
    return result.exit_code, result.output


def only(found: list, code: str, line: int | None = 2):
    assert len(found) == 1, found
    diagnostic = found[0]
    assert diagnostic.code == code, diagnostic
    if line is not None:
        assert diagnostic.span is not None and diagnostic.span.line == line, diagnostic
    return diagnostic


def fast(call):
    start = time.perf_counter()
    result = call()
    assert time.perf_counter() - start < 2, "took too long"
    return result


# ---- inputs: confinement ----------------------------------------------------------------------------

def test_an_absolute_include_outside_the_project_is_refused_without_reading_it(tmp_path):
    diagnostic = only(errors(spec_including(tmp_path, "/etc/passwd")), "RG006")
    assert "outside the project" in diagnostic.message and "root:" not in str(diagnostic)


def test_a_relative_include_that_climbs_out_is_refused(tmp_path):
    project = tmp_path / "project"
    project.mkdir()
    write(tmp_path / "blocks.yaml", LIBRARY)
    only(errors(spec_including(project, "../blocks.yaml")), "RG006")


def test_a_link_inside_the_project_to_a_file_outside_is_refused(tmp_path):
    project = tmp_path / "project"
    project.mkdir()
    (tmp_path / "shadow").write_text(SECRET)
    (project / "blocks.yaml").symlink_to(tmp_path / "shadow")
    diagnostic = only(errors(spec_including(project, "blocks.yaml")), "RG006")
    assert "c2VjcmV0" not in resgraph.SpecError([diagnostic]).args[0]


def test_extends_outside_the_project_is_refused(tmp_path):
    project = tmp_path / "project"
    project.mkdir()
    write(tmp_path / "base.yaml", NET.format(head=""))
    only(errors(write(project / "child.yaml", "resgraph: 1\nextends: ../base.yaml\n")), "RG006")


def test_include_path_and_resgraph_path_admit_a_directory(tmp_path, monkeypatch):
    project, shared = tmp_path / "project", tmp_path / "shared"
    project.mkdir(), shared.mkdir()
    write(shared / "blocks.yaml", LIBRARY)
    spec = spec_including(project, "blocks.yaml")   # found in the named directory, not beside the spec
    assert only(errors(spec), "RG031").message.startswith("cannot include `blocks.yaml`")
    assert errors(spec, include_path=[shared]) == []
    assert resgraph.load(spec, include_path=[str(shared)]).params == 8 * 2 + 2
    monkeypatch.setenv("RESGRAPH_PATH", os.pathsep.join(["/nonexistent", str(shared)]))
    assert errors(spec) == []
    monkeypatch.delenv("RESGRAPH_PATH")
    code, output = run_cli("validate", "--include-path", str(shared), str(spec), cwd=tmp_path)
    assert code == 0, output
    code, output = run_cli("validate", "-I", str(shared), "-I", str(project), str(spec), cwd=tmp_path)
    assert code == 0, output


def test_files_under_the_project_still_include_each_other(tmp_path):
    (tmp_path / "lib").mkdir()
    write(tmp_path / "lib" / "blocks.yaml", LIBRARY)
    write(tmp_path / "lib" / "more.yaml", "resgraph: 1\ninclude: [blocks.yaml]\n")
    assert errors(spec_including(tmp_path, "lib/more.yaml")) == []


# ---- inputs: non-files and huge files -----------------------------------------------------------------

def test_a_fifo_is_refused_at_once_as_include_and_as_spec(tmp_path):
    os.mkfifo(tmp_path / "pipe.yaml")
    diagnostic = only(fast(lambda: errors(spec_including(tmp_path, "pipe.yaml"))), "RG007")
    assert "named pipe" in diagnostic.message
    diagnostic = only(fast(lambda: errors(tmp_path / "pipe.yaml")), "RG007", line=None)
    assert diagnostic.span is None
    code, output = run_cli("validate", str(tmp_path / "pipe.yaml"), cwd=tmp_path)
    assert code == 2 and "error[RG007]" in output


@pytest.mark.parametrize("device", ["/dev/zero", "/dev/null"])
def test_a_device_is_refused_without_reading_it(tmp_path, device):
    if not os.path.exists(device):
        pytest.skip(f"no {device}")
    only(fast(lambda: errors(Path(device))), "RG007", line=None)
    (tmp_path / "zero.yaml").symlink_to(device)   # a link to it under the project: outside it
    only(fast(lambda: errors(spec_including(tmp_path, "zero.yaml"))), "RG006")


def test_dev_stdin_is_refused_when_it_is_a_pipe(tmp_path):
    """`/dev/stdin` on a pipe whose writer never writes: reading it would hang; it is refused at once."""
    code = "import resgraph; print([d.code for d in resgraph.validate('/dev/stdin')])"
    read, write_end = os.pipe()
    try:
        result = subprocess.run([sys.executable, "-c", code], stdin=read, capture_output=True, text=True, timeout=60)
    finally:
        os.close(read), os.close(write_end)
    assert result.stdout.strip() == "['RG007']", result


def test_a_symlink_loop_is_a_located_error(tmp_path):
    (tmp_path / "a.yaml").symlink_to(tmp_path / "b.yaml")
    (tmp_path / "b.yaml").symlink_to(tmp_path / "a.yaml")
    diagnostic = only(fast(lambda: errors(spec_including(tmp_path, "a.yaml"))), "RG031")
    assert "loop of symbolic links" in diagnostic.message
    assert only(errors(tmp_path / "a.yaml"), "RG004", line=None).message.endswith("is a loop of symbolic links")


def test_a_nul_in_an_include_path_is_a_located_error(tmp_path):
    path = tmp_path / "spec.yaml"
    path.write_text(spec_text(NET.format(head='include: ["blocks\\0.yaml"]')))
    assert "NUL" in only(errors(path), "RG031").message


def test_a_2_gb_sparse_file_is_refused_by_its_size_before_reading(tmp_path):
    big = tmp_path / "big.yaml"
    with open(big, "wb") as file:
        file.truncate(2 * 2**30)
    diagnostic = only(fast(lambda: errors(big)), "RG005", line=1)
    assert "2,147,483,648 bytes" in diagnostic.message
    assert "2,147,483,648 bytes" in only(fast(lambda: errors(spec_including(tmp_path, "big.yaml"))), "RG005").message


def test_the_read_itself_is_bounded_for_a_file_that_grows(tmp_path, monkeypatch):
    big = tmp_path / "grown.yaml"
    big.write_bytes(b"#" * (MAX_FILE_BYTES + 10))
    monkeypatch.setattr("resgraph.source.check_regular_file", lambda path: None)   # as if it grew after `stat`
    with pytest.raises(FileProblem) as caught:
        read_spec_bytes(big)
    assert caught.value.code == "RG005" and "grew while it was read" in caught.value.message


# ---- inputs: files that are not specs ---------------------------------------------------------------

def test_an_included_text_file_is_reported_once_and_never_quoted(tmp_path):
    (tmp_path / "copied").write_text(SECRET)
    spec = spec_including(tmp_path, "copied")
    diagnostic = only(errors(spec), "RG008")
    code, output = run_cli("validate", str(spec), cwd=tmp_path)
    assert code == 1 and output.count("error[") == 1 and "RG008" in output
    assert "c2VjcmV0" not in output and "daemon" not in output


def test_an_included_file_with_broken_yaml_and_no_resgraph_line_is_not_quoted(tmp_path):
    (tmp_path / "script.yaml").write_text("#!/bin/sh\nexport TOKEN=c2VjcmV0: [\n")
    code, output = run_cli("validate", str(spec_including(tmp_path, "script.yaml")), cwd=tmp_path)
    assert code == 1 and "RG008" in output and "c2VjcmV0" not in output and "RG001" not in output


def test_a_top_level_file_that_is_not_a_spec_is_reported_once_without_excerpt(tmp_path):
    path = tmp_path / "shadow"
    path.write_text(SECRET)
    code, output = run_cli("validate", str(path), cwd=tmp_path)
    assert code == 1 and output.count("error[") == 1 and "RG008" in output and "c2VjcmV0" not in output
    (tmp_path / "text").write_text("just some words\n")
    assert only(errors(tmp_path / "text"), "RG008", line=1).message.endswith("it is not a mapping")


# ---- outputs ------------------------------------------------------------------------------------------

@pytest.fixture
def spec(tmp_path) -> Path:
    return write(tmp_path / "spec.yaml", NET.format(head=""))


def test_render_never_replaces_the_spec(tmp_path):
    spec = write(tmp_path / "spec.dot", NET.format(head=""))
    before = spec.read_bytes()
    code, output = run_cli("render", str(spec), "-o", str(spec), cwd=tmp_path)
    assert code == 2 and "error[RG075]" in output and spec.read_bytes() == before
    with pytest.raises(atomic.OutputError):
        resgraph.render(spec, spec)
    assert spec.read_bytes() == before


def test_no_output_replaces_an_included_file_even_through_a_link(tmp_path):
    library = write(tmp_path / "blocks.dot", LIBRARY)
    spec = spec_including(tmp_path, "blocks.dot")
    (tmp_path / "alias.dot").symlink_to(library)
    before = library.read_bytes()
    for output in (library, tmp_path / "alias.dot"):
        code, text = run_cli("render", str(spec), "-o", str(output), cwd=tmp_path)
        assert code == 2 and "RG075" in text
    for output in ("alias.py", "blocks.py"):
        os.link(library, tmp_path / output)   # a hard link: another name for the same file
        code, text = run_cli("export", str(spec), "-o", str(tmp_path / output), cwd=tmp_path)
        assert code == 2 and "RG075" in text
    assert library.read_bytes() == before


def test_replacing_an_ordinary_output_keeps_its_mode(tmp_path, spec):
    out = tmp_path / "net.dot"
    out.write_text("old")
    out.chmod(0o600)
    assert run_cli("render", str(spec), "-o", str(out), cwd=tmp_path)[0] == 0
    assert out.read_text().startswith("digraph") and stat.S_IMODE(out.stat().st_mode) == 0o600
    out.chmod(0o640)
    atomic.write_atomically(out, b"again")
    assert out.read_bytes() == b"again" and stat.S_IMODE(out.stat().st_mode) == 0o640


def test_a_new_output_gets_the_umask_mode(tmp_path):
    mask = os.umask(0o027)
    try:
        atomic.write_atomically(tmp_path / "new.txt", b"x")
    finally:
        os.umask(mask)
    assert stat.S_IMODE((tmp_path / "new.txt").stat().st_mode) == 0o640


def test_non_regular_targets_are_refused(tmp_path, spec):
    os.mkfifo(tmp_path / "pipe.dot")
    (tmp_path / "null.dot").symlink_to(os.devnull)
    (tmp_path / "dir.dot").mkdir()
    for name in ("pipe.dot", "null.dot"):
        code, output = fast(lambda: run_cli("render", str(spec), "-o", str(tmp_path / name), cwd=tmp_path))
        assert code == 2 and "error[RG076]" in output, output
    with pytest.raises(atomic.OutputError) as caught:
        resgraph.render(spec, tmp_path / "dir.dot")
    assert caught.value.diagnostics[0].code == "RG076" and "directory" in caught.value.diagnostics[0].message
    assert stat.S_ISFIFO(os.lstat(tmp_path / "pipe.dot").st_mode) and os.path.islink(tmp_path / "null.dot")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dir.dot", "null.dot", "pipe.dot", "spec.yaml"]


def test_a_stale_temporary_of_a_killed_run_is_removed_by_the_next(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale_file = tmp_path / f".net.dot.resgraph-{dead.pid}-0123abcd.tmp"
    stale_dir = tmp_path / f".net.onnx.resgraph-{dead.pid}-0123abcd.tmp"
    alive = tmp_path / f".net.dot.resgraph-{os.getpid()}-0123abcd.tmp"   # a run still going: kept
    other = tmp_path / f".other.dot.resgraph-{dead.pid}-0123abcd.tmp"   # another target's: kept
    stale_file.write_bytes(b"x" * 100)
    stale_dir.mkdir()
    (stale_dir / "output.onnx").write_bytes(b"x")
    alive.write_bytes(b"x")
    other.write_bytes(b"x")
    atomic.write_atomically(tmp_path / "net.dot", b"digraph {}")
    assert not stale_file.exists() and alive.exists() and other.exists() and stale_dir.exists()
    atomic.write_through_directory(tmp_path / "net.onnx", lambda path: Path(path).write_bytes(b"onnx"))
    assert not stale_dir.exists() and (tmp_path / "net.onnx").read_bytes() == b"onnx"


def test_a_failing_exporter_leaves_nothing(tmp_path):
    def fail(path: str) -> None:
        Path(path).write_bytes(b"partial")
        raise RuntimeError("exporter failed")

    with pytest.raises(RuntimeError):
        atomic.write_through_directory(tmp_path / "net.pt2", fail)
    assert list(tmp_path.iterdir()) == []


def _terminate_when_paused(command: list[str], cwd: Path) -> subprocess.CompletedProcess:
    """Run `command` with the test pause hook on, send SIGTERM once it says it paused, and return its result."""
    env = {**os.environ, atomic.PAUSE_VARIABLE: "60"}
    process = subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = process.stderr.readline()   # blocks until the temporary file is written and the process waits
        assert "paused before rename" in line, line + process.stderr.read()
        assert any(p.name.endswith(".tmp") for p in cwd.iterdir()), "no temporary at the pause"
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=60)
    finally:
        process.kill()
    return subprocess.CompletedProcess(command, process.returncode, out, line + err)


def test_sigterm_while_writing_leaves_no_temporary(tmp_path, spec):
    result = _terminate_when_paused([sys.executable, "-m", "resgraph", "render", "spec.yaml", "-o", "net.dot"],
                                    tmp_path)
    assert result.returncode == 128 + signal.SIGTERM, result
    assert sorted(p.name for p in tmp_path.iterdir()) == ["spec.yaml"]


def test_sigterm_during_an_export_through_a_directory_leaves_nothing(tmp_path):
    code = ("import sys; from pathlib import Path; from resgraph.atomic import write_through_directory as w; "
            "w(Path('net.onnx'), lambda p: Path(p).write_bytes(b'x' * 2**20))")
    result = _terminate_when_paused([sys.executable, "-c", code], tmp_path)
    assert result.returncode == 128 + signal.SIGTERM, result
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
@pytest.mark.parametrize("suffix", ["pt2", "onnx"])
def test_sigterm_during_a_real_export_leaves_nothing(tmp_path, spec, suffix, request):
    """Slow (30-50 s on 2 busy cores): runs with `-m slow` or RESGRAPH_SLOW=1; the cheap twin above runs always."""
    if request.config.getoption("markexpr") != "slow" and os.environ.get("RESGRAPH_SLOW") != "1":
        pytest.skip("slow: run with `-m slow` or RESGRAPH_SLOW=1")
    if suffix == "onnx":
        pytest.importorskip("onnxscript")
    result = _terminate_when_paused([sys.executable, "-m", "resgraph", "export", "spec.yaml", "-o", f"net.{suffix}"],
                                    tmp_path)
    assert result.returncode == 128 + signal.SIGTERM, result
    assert sorted(p.name for p in tmp_path.iterdir()) == ["spec.yaml"]
    code = subprocess.run([sys.executable, "-m", "resgraph", "export", "spec.yaml", "-o", f"net.{suffix}"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert code.returncode == 0, code.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"net.{suffix}", "spec.yaml"]
