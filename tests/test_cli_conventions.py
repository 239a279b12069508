"""What every command owes a shell script or a cron log: one-line errors with their exit code,
no warnings or tracebacks on stderr, a closed pipe that is no error, options that mean the same
everywhere, help that reflows, tables printed in full. CliRunner where it is enough; real
processes for pipes, terminals and the real stderr."""
import errno
import fcntl
import json
import os
import pty
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from typer.main import get_command
from typer.testing import CliRunner

from procalign.cli import app
from procalign.cli.errors import exit_codes
from procalign.errors import InputError
from procalign.pipeline.delivery import lock_path
from procalign.pipeline.report import unmet_gates

runner = CliRunner(env={"COLUMNS": "200"})
CMD = [sys.executable, "-m", "procalign"]
ONE_LINE_ERROR = re.compile(r"^procalign: error: [^\n]+\n$")


def invoke(*args, **kw):
    return runner.invoke(app, [str(a) for a in args], **kw)


def run(*args, **kw):
    return subprocess.run(CMD + [str(a) for a in args], capture_output=True, text=True, **kw)


def assert_one_line_error(stderr: str, code: int, exit_code: int):
    assert exit_code == code, stderr
    assert ONE_LINE_ERROR.match(stderr), repr(stderr)
    assert not any(c in stderr for c in "╭│╰") and "Traceback" not in stderr and "Usage:" not in stderr


@pytest.fixture(scope="module")
def t_npz(tmp_path_factory):
    """A transform e5 -> minilm fitted on the committed fixtures."""
    fixtures = Path(__file__).resolve().parent.parent / "fixtures"
    out = tmp_path_factory.mktemp("t") / "t.npz"
    r = invoke("fit", fixtures / "e5.npy", fixtures / "minilm.npy", "-o", out, "--no-report")
    assert r.exit_code == 0, r.output
    return out


# 1, 2: usage errors -------------------------------------------------------------------------

@pytest.mark.parametrize("args, pattern", [
    (["fit", "a.npy", "b.npy", "--bogus"], r"No such option: --bogus; see 'procalign fit --help'"),
    (["fit", "a.npy"], r"Missing argument 'TARGET'; see 'procalign fit --help'"),
    (["apply", "t.npz", "x.npy"], r"Missing option '--output'"),
    (["fit", "a.npy", "b.npy", "--eval-size", "many"], r"'--eval-size'.*valid integer"),
    (["fit", "a.npy", "b.npy", "--seed", "-1"], r"'--seed'.*greater than or equal to 0"),
    (["fit", "a.npy", "b.npy", "--min-cosine", "nan"], r"'--min-cosine': must be a finite number, got nan"),
    (["evaluate", "t.npz", "a.npy", "b.npy", "--min-top1", "inf"], r"'--min-top1': must be a finite number"),
    (["fit", "a.npy", "b.npy", "--max-residual", "-inf"], r"'--max-residual': must be a finite number"),
    (["fti"], r"No such command 'fti'.*see 'procalign --help'"),
])
def test_usage_errors_are_one_line_with_exit_2(args, pattern):
    r = invoke(*args)
    assert_one_line_error(r.stderr, 2, r.exit_code)
    assert re.search(pattern, r.stderr), r.stderr
    assert r.stdout == ""


def test_usage_error_in_a_real_process_is_one_line():
    r = run("fit", "a.npy", "b.npy", "--seed", "-1")
    assert_one_line_error(r.stderr, 2, r.returncode)


def test_bare_procalign_still_shows_the_help():
    r = invoke()
    assert r.exit_code == 2 and "fit" in r.output and "evaluate" in r.output and "procalign: error" not in r.output


# 3: warnings ---------------------------------------------------------------------------------

def test_numpy_warnings_never_reach_stderr(tmp_path):
    x = np.random.default_rng(0).normal(size=(200, 8)).astype(np.float32)
    x[7, 1] = 3e38  # near float32's max: the held-out metrics overflow and numpy warns
    np.save(tmp_path / "a.npy", x)
    np.save(tmp_path / "b.npy", x[::-1])
    args = ["fit", tmp_path / "a.npy", tmp_path / "b.npy", "--holdout", "0.5", "-o", tmp_path / "t.npz", "--overwrite"]
    shown = run("--debug", *args)
    assert "RuntimeWarning" in shown.stderr  # the trigger is real; --debug shows it
    quiet = run(*args)
    assert quiet.returncode == shown.returncode
    assert "Warning" not in quiet.stderr, quiet.stderr


def test_extreme_but_finite_values_get_a_report(tmp_path):
    # squares of 3e38 overflow float32: the anchor pass must fall back to float64, not fail
    x = np.random.default_rng(0).normal(size=(200, 8)).astype(np.float32)
    x[7, 1] = 3e38
    np.save(tmp_path / "a.npy", x)
    np.save(tmp_path / "b.npy", x[::-1])
    fitted = run("fit", tmp_path / "a.npy", tmp_path / "b.npy", "-o", tmp_path / "t.npz", "--json")
    assert fitted.returncode == 0, fitted.stderr
    report = json.loads(fitted.stdout)["report"]["anchors"]
    assert report["pairs"] == 200 and np.isfinite(report["cosine"]["mean"])
    evaluated = run("evaluate", tmp_path / "t.npz", tmp_path / "a.npy", tmp_path / "b.npy")
    assert evaluated.returncode == 0, evaluated.stderr


# 4: one line, whatever the library says ------------------------------------------------------

def test_a_multi_line_library_message_prints_as_one_line(capsys):
    with pytest.raises(Exception) as exc:
        with exit_codes():
            raise InputError("not a readable file (Unable to open\n  file signature not found)\r\n; re-create it",
                             "x.h5")
    assert exc.value.exit_code == 4
    assert capsys.readouterr().err == ("procalign: error: x.h5: not a readable file (Unable to open file signature "
                                       "not found) ; re-create it\n")


# 5: a closed stdout --------------------------------------------------------------------------

def _fit_into_closed_pipe(fixtures, tmp_path, *extra):
    err = (tmp_path / "stderr").open("w+")
    proc = subprocess.Popen(CMD + ["fit", str(fixtures / "e5.npy"), str(fixtures / "minilm.npy"), *extra],
                            stdout=subprocess.PIPE, stderr=err)
    proc.stdout.close()  # the reader is gone before the first line: every write meets EPIPE
    code = proc.wait(timeout=120)
    err.seek(0)
    return code, err.read()


def test_a_closed_stdout_is_not_an_error(fixtures, tmp_path):
    for extra in ([], ["--json"]):
        code, stderr = _fit_into_closed_pipe(fixtures, tmp_path, "-o", str(tmp_path / "t.npz"), "--overwrite", *extra)
        assert (code, stderr) == (0, "")
        assert (tmp_path / "t.npz").exists()


def test_a_closed_stdout_keeps_the_exit_code_of_a_failed_gate(fixtures, tmp_path):
    code, stderr = _fit_into_closed_pipe(fixtures, tmp_path, "--holdout", "0.2", "--min-top1", "0.999")
    assert code == 3 and ONE_LINE_ERROR.match(stderr), stderr


def test_fit_piped_into_head(fixtures, tmp_path):
    shell = (f"{sys.executable} -m procalign fit {fixtures / 'e5.npy'} {fixtures / 'minilm.npy'} --holdout 0.2 "
             f"-o {tmp_path / 't.npz'} 2>{tmp_path / 'err'} | head -1; echo \"${{PIPESTATUS[0]}}\"")
    r = subprocess.run(["bash", "-c", shell], capture_output=True, text=True)
    first, status = r.stdout.splitlines()
    assert first.startswith("held-out pairs") and status == "0"
    assert (tmp_path / "err").read_text() == ""


# 6: OSError without a filename ---------------------------------------------------------------

@pytest.mark.parametrize("error, output, expected", [
    (OSError(errno.ENOSPC, "No space left on device"), "out.npy",
     "the destination out.npy: No space left on device"),
    (OSError(errno.ENOSPC, "No space left on device", ".out.npy.procalign-partial"), "out.npy",
     ".out.npy.procalign-partial: No space left on device"),
    (OSError(errno.EIO, "Input/output error"), None, "Input/output error"),
])
def test_os_errors_name_a_file(capsys, error, output, expected):
    with pytest.raises(Exception) as exc:
        with exit_codes(output):
            raise error
    assert exc.value.exit_code == 6
    err = capsys.readouterr().err
    assert ONE_LINE_ERROR.match(err) and expected in err, err


def test_disk_full_while_writing_the_transform_names_it(fixtures, tmp_path, monkeypatch):
    import procalign.transform_file

    def full(*args, **kw):
        raise OSError(errno.ENOSPC, "No space left on device")  # as a write through a file object raises it

    monkeypatch.setattr(procalign.transform_file, "save", full)
    r = invoke("fit", fixtures / "e5.npy", fixtures / "minilm.npy", "-o", tmp_path / "t.npz", "--no-report")
    assert_one_line_error(r.stderr, 6, r.exit_code)
    assert f"the destination {tmp_path / 't.npz'}: No space left on device" in r.stderr
    assert list(tmp_path.iterdir()) == []


# 7: the same options everywhere ----------------------------------------------------------------

READS = {"fit", "apply", "evaluate", "inspect", "threshold", "compose", "fit-hub"}
PAIRS = {"fit", "evaluate", "threshold", "compose", "fit-hub"}
STREAMS = {"fit", "apply", "evaluate", "compose", "fit-hub"}
WRITES = {"fit", "apply", "invert", "compose", "fit-hub"}
EXPECTED = {
    "--column": READS, "--dataset": READS, "--quiet": READS | {"export", "invert"}, "--json": READS | {"invert"},
    "--id-column": PAIRS, "--by-position": PAIRS, "--memory": STREAMS, "--batch-rows": STREAMS,
    "--wait": WRITES, "--overwrite": WRITES | {"export"}, "--force": {"apply", "evaluate"},
    "--eval-size": {"fit", "evaluate"}, "--min-top1": {"fit", "evaluate"}, "--min-cosine": {"fit", "evaluate"},
    "--max-residual": {"fit", "evaluate"},
    "--engine": {"fit", "apply"},
    "--scheduler": {"fit", "apply"},
    "--workers": {"fit", "apply"},
    "--storage-options": {"fit", "apply"},
}


def test_shared_options_exist_and_say_the_same_everywhere():
    commands = get_command(app).commands
    for option, where in EXPECTED.items():
        helps = {}
        for name, cmd in commands.items():
            found = [p for p in cmd.params if option in getattr(p, "opts", ())]
            assert bool(found) == (name in where), f"{name} {'lacks' if not found else 'has'} {option}"
            if found:
                helps[name] = (tuple(found[0].opts), found[0].help)
        assert len(set(helps.values())) == 1, helps
    assert all("-q" in p.opts for cmd in commands.values() for p in cmd.params if "--quiet" in p.opts)


def test_dataset_names_the_hdf5_dataset_of_every_input_that_names_none(fixtures, t_npz):
    e5, minilm = fixtures / "e5.h5", fixtures / "minilm.h5"
    assert invoke("fit", e5, minilm, "--dataset", "/emb", "--no-report").exit_code == 0
    assert invoke("evaluate", t_npz, e5, minilm, "--dataset", "/emb").exit_code == 0
    r = invoke("evaluate", t_npz, e5, f"{minilm}:/emb", "--dataset", "/nope")
    assert_one_line_error(r.stderr, 2, r.exit_code)
    assert "'/nope'" in r.stderr and "e5.h5" in r.stderr  # given to e5.h5 only
    for args in ([fixtures / "e5.npy", f"{minilm}:/emb"], [fixtures / "e5.npy", fixtures / "minilm.npy"]):
        r = invoke("fit", *args, "--dataset", "/emb", "--no-report")  # no input takes it: not silently ignored
        assert_one_line_error(r.stderr, 2, r.exit_code)
        assert "--dataset /emb applies only to HDF5 inputs that do not name a dataset" in r.stderr


def test_evaluate_numbers_do_not_depend_on_the_chunk_size(fixtures, t_npz):
    reports = []
    for extra in ([], ["--batch-rows", "97"], ["--memory", "8"]):
        r = invoke("evaluate", t_npz, fixtures / "e5.npy", fixtures / "minilm.npy", "--json", *extra)
        assert r.exit_code == 0, r.output
        reports.append(json.loads(r.stdout)["report"])
    for other in reports[1:]:
        assert other["pairs"] == reports[0]["pairs"] and other["sample"] == reports[0]["sample"]
        for name in ("aligned", "unaligned"):
            assert other[name]["top1"] == reports[0][name]["top1"]
            assert other[name]["cosine"]["mean"] == pytest.approx(reports[0][name]["cosine"]["mean"], abs=1e-6)


def test_inspect_accepts_quiet(t_npz):
    assert invoke("inspect", t_npz, "-q").exit_code == 0


def test_fit_wait_waits_for_the_destination_lock(fixtures, tmp_path):
    out = tmp_path / "t.npz"
    fd = os.open(lock_path(out), os.O_RDWR | os.O_CREAT, 0o644)
    fcntl.flock(fd, fcntl.LOCK_EX)  # another run writing t.npz
    try:
        args = ["fit", fixtures / "e5.npy", fixtures / "minilm.npy", "-o", out, "--no-report"]
        r = run(*args)
        assert_one_line_error(r.stderr, 7, r.returncode)
        waiting = subprocess.Popen(CMD + [str(a) for a in args] + ["--wait"], stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, text=True)
        time.sleep(3)  # fitting 2,600 pairs takes well under that; then it waits
        assert waiting.poll() is None and not out.exists()
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)
    stdout, stderr = waiting.communicate(timeout=60)
    assert waiting.returncode == 0, stderr
    assert out.exists() and stdout.rstrip().endswith(f"wrote {out}")


# 8: fit without -o ---------------------------------------------------------------------------

def test_fit_without_output_prints_the_report_and_writes_nothing(fixtures, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    r = invoke("fit", fixtures / "e5.npy", fixtures / "minilm.npy", "--holdout", "0.2")
    assert r.exit_code == 0, r.output
    assert "held-out top-1" in r.stdout and r.stdout.splitlines()[-1] == "nothing written (no -o given)"
    r = invoke("fit", fixtures / "e5.npy", fixtures / "minilm.npy", "--json", "--no-report")
    assert r.exit_code == 0 and json.loads(r.stdout)["output"] is None
    assert list(tmp_path.iterdir()) == [] and not list(fixtures.glob(".*procalign*"))


# 9: evaluate checks stamps; its gate text ----------------------------------------------------

def test_evaluate_refuses_samples_stamped_in_the_wrong_space(fixtures, tmp_path, t_npz):
    mapped, back = tmp_path / "mapped.npy", tmp_path / "back.npy"
    assert invoke("apply", t_npz, fixtures / "e5.npy", "-o", mapped).exit_code == 0          # stamped minilm
    assert invoke("apply", t_npz, fixtures / "minilm.npy", "-o", back, "--inverse").exit_code == 0  # stamped e5
    r = invoke("evaluate", t_npz, mapped, fixtures / "minilm.npy")
    assert_one_line_error(r.stderr, 8, r.exit_code)
    assert "mapped.npy" in r.stderr and "source sample is stamped as space 'minilm'" in r.stderr
    r = invoke("evaluate", t_npz, fixtures / "e5.npy", back)
    assert_one_line_error(r.stderr, 8, r.exit_code)
    assert "back.npy" in r.stderr and "target sample is stamped as space 'e5'" in r.stderr
    assert invoke("evaluate", t_npz, fixtures / "e5.npy", back, "--force").exit_code == 0
    assert invoke("evaluate", t_npz, fixtures / "e5.npy", mapped).exit_code == 0  # stamped as the target: fine


def test_gate_failure_says_what_happened(fixtures, tmp_path, t_npz):
    r = invoke("evaluate", t_npz, fixtures / "e5.npy", fixtures / "minilm.npy", "--min-cosine", "0.99")
    assert_one_line_error(r.stderr, 3, r.exit_code)
    assert "--min-cosine 0.99: got" in r.stderr and "written" not in r.stderr
    r = invoke("fit", fixtures / "e5.npy", fixtures / "minilm.npy", "-o", tmp_path / "t.npz", "--holdout", "0.2",
               "--min-top1", "0.999")
    assert_one_line_error(r.stderr, 3, r.exit_code)
    assert "nothing was written" in r.stderr and r.stdout.splitlines()[-1] == "nothing written (quality gate failed)"


def test_a_nan_metric_fails_its_gate():
    failures = unmet_gates({"cosine": {"mean": float("nan")}}, {"min_cosine": 0.5})
    assert failures == ["--min-cosine 0.5: got nan (not a finite number)"]


# 10: help reflows ----------------------------------------------------------------------------

def _paragraphs(text: str) -> list[str]:
    return [" ".join(p.split()) for p in text.split("\n\n") if p.strip()]


@pytest.mark.parametrize("columns", [60, 200])
def test_help_paragraphs_reflow_at_any_width(columns):
    wide = CliRunner(env={"COLUMNS": str(columns)})
    for name, cmd in get_command(app).commands.items():
        out = wide.invoke(app, [name, "--help"]).stdout
        lines = [line.strip(" │") for line in out.splitlines()]
        assert max(len(line) for line in out.splitlines()) <= columns
        flowing = " ".join(" ".join(lines).split())
        for paragraph in _paragraphs(cmd.help):
            assert paragraph in flowing, (name, paragraph)
            if columns == 200:  # room for every paragraph on one line: no hard break may show
                assert any(paragraph in line for line in lines), (name, paragraph)


# 11: tables in full when not on a terminal ---------------------------------------------------

def test_piped_tables_are_not_cut(t_npz):
    checksum = json.loads(invoke("inspect", t_npz, "--json").stdout)["checksum"]
    assert re.fullmatch(r"sha256:[0-9a-f]{64}", checksum)
    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"}
    primary, secondary = pty.openpty()  # stderr on an 80-column terminal, stdout into a pipe, as in `| tee log`
    try:
        r = subprocess.run(CMD + ["inspect", str(t_npz)], stdout=subprocess.PIPE, stderr=secondary, text=True, env=env)
    finally:
        os.close(primary), os.close(secondary)
    assert r.returncode == 0
    assert checksum in r.stdout and "…" not in r.stdout


def test_names_from_the_data_print_as_they_are(fixtures, tmp_path):
    r = invoke("fit", fixtures / "e5.npy", fixtures / "minilm.npy", "--no-report", "--source-name", "[/bold] :smile:")
    assert r.exit_code == 0, r.output
    assert "fitted [/bold] :smile: (384-d)" in r.stdout


def test_the_cli_imports_no_numpy():
    r = subprocess.run([sys.executable, "-c", "import sys, procalign.cli; print('numpy' in sys.modules)"],
                       capture_output=True, text=True)
    assert r.stdout.strip() == "False", r.stderr
