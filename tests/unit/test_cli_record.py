"""The README CLI table's check (tests/cli_record.py): its parser, its matcher, and the
session it fails."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

from tests import cli_record
from tests.cli_record import Claim, missing, readme_claims, split_row, table_rows

ROOT = Path(__file__).resolve().parents[2]

TABLE = """\
# Tool

### CLI

| command | what it does |
|---|---|
| `hubforge up [--port] [--quiet\\|--verbose]` | start |
| `hubforge serve deploy DIR\\|--job ID --name N / list / undeploy N` | endpoints |
| `hubforge label list / create NAME / export NAME [--format F]` (`--owner U` for theirs) | labels |

## Next
"""

OPTIONS = {
    ("up",): {"--port", "--quiet", "--verbose"},
    ("serve", "deploy"): {"--job", "--name"},
    ("serve", "list"): set(),
    ("serve", "undeploy"): set(),
    ("label", "list"): {"--owner"},
    ("label", "create"): set(),
    ("label", "export"): {"--owner", "--format"},
}


def claims(text: str = TABLE) -> list[Claim]:
    found, problems = readme_claims(text, OPTIONS.get)
    assert problems == []
    return found


def run_of(*args: str, rc: int | None = 0) -> dict:
    return {"argv": list(args), "rc": rc}


def test_a_row_splits_only_at_unescaped_pipes():
    row = "| `hubforge up [--quiet\\|--verbose]` | start (`a\\|b`) |"
    assert split_row(row) == ["`hubforge up [--quiet|--verbose]`", "start (`a|b`)"]
    rows, problems = table_rows(TABLE)
    assert problems == [] and len(rows) == 3
    assert rows[1] == "`hubforge serve deploy DIR|--job ID --name N / list / undeploy N`"


def test_an_unescaped_pipe_in_a_code_span_is_a_broken_row():
    broken = TABLE.replace("DIR\\|--job", "DIR|--job")
    _, problems = table_rows(broken)
    assert len(problems) == 1 and "3 cells, not 2" in problems[0]


def test_each_action_has_its_own_flags_and_a_later_span_goes_where_the_cli_takes_it():
    assert set(claims()) == {
        Claim(("up",)),
        Claim(("up",), "--port"),
        Claim(("up",), "--quiet"),
        Claim(("up",), "--verbose"),  # after the escaped pipe: checked too
        Claim(("serve", "deploy")),
        Claim(("serve", "deploy"), "--job"),
        Claim(("serve", "deploy"), "--name"),
        Claim(("serve", "list")),
        Claim(("serve", "undeploy")),
        Claim(("label", "list")),
        Claim(("label", "list"), "--owner"),
        Claim(("label", "create")),  # no --owner: the CLI has none there
        Claim(("label", "export")),
        Claim(("label", "export"), "--format"),
        Claim(("label", "export"), "--owner"),
    }
    assert str(Claim(("label", "export"), "--owner")) == "hubforge label export --owner"


def test_a_missing_flag_is_reported():
    runs = [
        run_of("up", "--port", "8001", "--quiet"),
        run_of("up", "--verbose", rc=None),  # still running (a Popen): it ran
        run_of("serve", "deploy", "--job", "j1", "--name=ep"),
        run_of("serve", "list"),
        run_of("serve", "undeploy", "ep"),
        run_of("label", "list", "--owner", "sam"),
        run_of("label", "create", "p"),
        run_of("label", "export", "p", "--format", "CSV"),
    ]
    assert missing(claims(), runs) == [Claim(("label", "export"), "--owner")]
    runs.append(run_of("label", "export", "p", "--owner", "sam"))
    assert missing(claims(), runs) == []


def test_only_a_successful_run_of_that_very_command_counts():
    every = claims()
    # the flag of another command, a refused run, the flag as a value: none of them
    runs = [
        run_of("label", "list", "--owner", "sam"),
        run_of("label", "export", "p", "--owner", "sam", rc=2),
        run_of("label", "export", "--format", "CSV", "x--owner"),
    ]
    assert Claim(("label", "export"), "--owner") in missing(every, runs)
    assert Claim(("label", "export"), "--format") not in missing(every, runs)


def test_the_readme_table_parses_and_the_cli_has_all_it_claims():
    found, problems = readme_claims()
    assert problems == []
    for claim in found:
        options = cli_record.cli_options(claim.words)
        assert options is not None, f"README documents {claim}: the CLI has no such command"
        assert claim.flag is None or claim.flag in options, f"the CLI has no {claim}"
    for claim in (
        Claim(("up",), "--verbose"),
        Claim(("tensorboard", "stop"), "--all"),
        Claim(("serve", "deploy"), "--max-batch-size"),
        Claim(("label", "progress"), "--owner"),
    ):
        assert claim in found


def test_the_command_args_of_each_way_tests_run_it():
    assert cli_record.command_args([sys.executable, "-m", "hubforge.cli", "down"]) == ["down"]
    assert cli_record.command_args(["/venv/bin/hubforge", "status", Path("/x")]) == [
        "status",
        "/x",
    ]
    assert cli_record.command_args(["job", "list"]) == ["job", "list"]


SESSION_TEST = """
from tests import cli_record

def test_runs_part_of_the_table():
    cli_record.record(["hubforge", "status"], 0)
"""


def test_a_judged_session_fails_and_lists_what_is_missing(tmp_path):
    (tmp_path / "test_some.py").write_text(textwrap.dedent(SESSION_TEST))
    (tmp_path / "pytest.ini").write_text("[pytest]\n")

    def pytest_run(*options: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "pytest", "-p", "tests.cli_record", "-p", "no:randomly"]
            + ["-p", "no:cacheprovider", *options, "test_some.py"],
            cwd=tmp_path,
            env=dict(os.environ, PYTHONPATH=str(ROOT)),
            capture_output=True,
            text=True,
            timeout=120,
        )

    judged = pytest_run("--cli-table-check=always")
    assert judged.returncode == 1, judged.stdout + judged.stderr
    assert "1 passed" in judged.stdout
    assert "never run successfully by any test" in judged.stdout
    assert "  hubforge up --verbose\n" in judged.stdout
    assert "  hubforge status\n" not in judged.stdout
    assert (tmp_path / "cli-record.jsonl").exists() is False  # it goes to pytest's basetemp

    partial = pytest_run("-v")  # a file named on the command line: not judged
    assert partial.returncode == 0, partial.stdout + partial.stderr
    assert "README CLI table: not judged (paths given on the command line)" in partial.stdout


def test_under_xdist_the_controller_judges_every_workers_record(tmp_path):
    """`-n 2`: each worker records what its tests ran; the judge reads them all."""
    for name, argv in (("status", '["hubforge", "status"]'), ("down", '["hubforge", "down"]')):
        (tmp_path / f"test_{name}.py").write_text(
            "from tests import cli_record\n\n"
            f"def test_{name}():\n    cli_record.record({argv}, 0)\n"
        )
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "tests.cli_record", "-p", "no:randomly"]
        + ["-p", "no:cacheprovider", "-n", "2", "--dist", "loadfile"]
        + ["--cli-table-check=always", "test_status.py", "test_down.py"],
        cwd=tmp_path,
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
        capture_output=True,
        text=True,
        timeout=120,
    )
    out = done.stdout + done.stderr
    assert done.returncode == 1 and "2 passed" in out, out
    assert "2 runs recorded" in out, out
    assert "  hubforge status\n" not in out and "  hubforge down\n" not in out
    assert "  hubforge up --verbose\n" in out
