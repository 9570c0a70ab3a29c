"""What the suite really ran of the `hubforge` CLI, and whether that covers the README's CLI
table (#32: the old meta-test searched the tests' source text, where a comment would do).

Recording: what runs through `tests.workbench.hubforge()` (and `start_workbench`), through
:func:`run` / :func:`popen` here (for ``tests.workbench.HUBFORGE``), or inside a user's server
and comes back to the test as results handed to :func:`record_kernel_results`. Each run is one
entry of :data:`RECORD` (this session's) and one JSON line of ``<basetemp>/cli-record.jsonl``
(argv after the program, exit status, test). A test that spells out
``[sys.executable, "-m", "hubforge.cli", ...]`` itself is not recorded: it does not count.

Judging (a plugin: ``-p tests.cli_record`` in pyproject's addopts): after the last test, each
(command words, flag) pair and each action of the README's table must match some recorded run
that succeeded (exit status 0, or still running: a started `up`); a refusal shows that the flag
is parsed, not that it works. Only a whole-suite run is judged (see :func:`partial_run`); a
missing pair fails the session and is listed in the terminal summary.

``python -m tests.cli_record [RECORD.jsonl...]`` checks record files (default: the newest
run's; the next run removes it: ``--cli-record FILE`` keeps a copy) against the table, whatever
ran: what a partial run left out.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
RECORD_NAME = "cli-record.jsonl"

RECORD: list[dict] = []
_LOCK = threading.Lock()
_STATE: dict = {"config": None}


# -- recording ------------------------------------------------------------------------------
def command_args(argv: Sequence[object]) -> list[str]:
    """The arguments after the program: ``[python, -m, hubforge.cli, *args]``,
    ``[.../hubforge, *args]`` or already just the args."""
    argv = [os.fsdecode(a) if isinstance(a, bytes | os.PathLike) else str(a) for a in argv]
    for i in range(1, len(argv)):
        if argv[i] == "hubforge.cli" and argv[i - 1] == "-m":
            return argv[i + 1 :]
    if argv and Path(argv[0]).name == "hubforge":
        return argv[1:]
    return argv


def record(argv: Sequence[object], rc: int | None = None, via: str = "") -> None:
    """Note one run of the CLI (``rc`` None: started, still running)."""
    test = os.environ.get("PYTEST_CURRENT_TEST", "").rsplit(" ", 1)[0]
    entry = {"argv": command_args(argv), "rc": rc, "test": test, "via": via}
    config = _STATE["config"]
    also = config.getoption("cli_record", None) if config is not None else None
    with _LOCK:
        RECORD.append(entry)
        for path in (record_file(), also):
            if path is not None:
                with open(path, "a") as f:
                    f.write(json.dumps(entry) + "\n")


def record_file() -> Path | None:
    """``<basetemp>/cli-record.jsonl`` once pytest has its temporary folder."""
    config = _STATE["config"]
    factory = getattr(config, "_tmp_path_factory", None)
    if factory is None:
        return None
    return factory.getbasetemp() / RECORD_NAME


def recorded(done: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    """Record a finished ``subprocess.run`` of the CLI; returns it."""
    record(done.args, done.returncode, via="run")
    return done


def run(args: Sequence[str], **kwargs) -> subprocess.CompletedProcess:
    """``subprocess.run([*HUBFORGE, *args], **kwargs)``, recorded."""
    from tests.workbench import HUBFORGE

    return recorded(subprocess.run([*HUBFORGE, *args], **kwargs))


def popen(args: Sequence[str], **kwargs) -> subprocess.Popen:
    """``subprocess.Popen([*HUBFORGE, *args], **kwargs)``, recorded as started."""
    from tests.workbench import HUBFORGE

    record([*HUBFORGE, *args], None, via="popen")
    return subprocess.Popen([*HUBFORGE, *args], **kwargs)


def record_kernel_results(results: Iterable[dict]) -> None:
    """The ``{"cmd": "job show ...", "rc": 0, ...}`` results of `hubforge` runs in a kernel."""
    for result in results:
        if isinstance(result.get("rc"), int):  # it ran (a step that raised has none)
            record(shlex.split(result["cmd"]), result["rc"], via="kernel")


# -- the README's table -----------------------------------------------------------------------
@dataclass(frozen=True, order=True)
class Claim:
    """One thing the table says the CLI does: an action (``flag`` None) or a flag of one."""

    words: tuple[str, ...]
    flag: str | None = None

    def __str__(self) -> str:
        return " ".join(("hubforge", *self.words, *([self.flag] if self.flag else [])))


FLAG = re.compile(r"(?<![\w-])--[a-z][a-z0-9-]*")
WORD = re.compile(r"[a-z][a-z0-9-]*")


def split_row(line: str) -> list[str]:
    """The cells of a table row, as GitHub splits them: at each ``|`` not escaped by a
    backslash, inside code spans too; ``\\|`` is a ``|`` in the cell."""
    line = line.strip()
    cells = re.split(r"(?<!\\)\|", line)
    if line.startswith("|"):
        cells = cells[1:]
    if line.endswith("|") and not line.endswith("\\|"):
        cells = cells[:-1]
    return [c.replace("\\|", "|").strip() for c in cells]


def table_rows(text: str, section: str = "### CLI") -> tuple[list[str], list[str]]:
    """(first cell of each body row, problems) of the first table after ``section``."""
    after = text.split(f"\n{section}\n", 1)
    if len(after) < 2:
        return [], [f"no {section!r} section"]
    lines = after[1].splitlines()
    start = next((i for i, line in enumerate(lines) if line.startswith("|")), None)
    if start is None:
        return [], [f"no table under {section!r}"]
    table = []
    for line in lines[start:]:
        if not line.startswith("|"):
            break
        table.append(line)
    width = len(split_row(table[0]))
    rows, problems = [], []
    for line in table[2:]:
        cells = split_row(line)
        if len(cells) != width:  # e.g. `a|b` in a code span: GitHub makes that two cells
            problems.append(f"{len(cells)} cells, not {width} (an unescaped |?): {line[:70]}")
        rows.append(cells[0])
    return rows, problems


def row_claims(
    cell: str, options: Callable[[tuple[str, ...]], set[str] | None] | None = None
) -> list[Claim]:
    """The claims of one first cell, e.g. ```hubforge job list / show ID / logs ID [--follow]```:
    actions separated by " / " (the first names the command), each with its own flags. Flags
    in a later code span (```--owner U` for a teammate's``) belong to every action of the row
    whose ``options`` (the CLI's, by default) include them."""
    spans = re.findall(r"`([^`]*)`", cell)
    if not spans or not spans[0].startswith("hubforge "):
        raise ValueError(f"not a `hubforge ...` row: {cell[:60]}")
    options = options or cli_options
    claims: list[Claim] = []
    top: tuple[str, ...] = ()
    for i, segment in enumerate(spans[0].removeprefix("hubforge ").split(" / ")):
        tokens = segment.split()
        words = []
        for token in tokens:
            if not WORD.fullmatch(token):
                break
            words.append(token)
        command = tuple(words) if i == 0 else (*top[:1], *words)
        top = top or command
        claims.append(Claim(command))
        claims += [Claim(command, flag) for flag in FLAG.findall(segment)]
        for flag in (f for span in spans[1:] for f in FLAG.findall(span)):
            known = options(command)
            if known is None or flag in known:
                claims.append(Claim(command, flag))
    return list(dict.fromkeys(claims))


def cli_options(words: tuple[str, ...], parser: argparse.ArgumentParser | None = None):
    """The option strings of the CLI command ``words`` (None: the CLI has no such command)."""
    if parser is None:
        from hubforge.cli import build_parser

        parser = build_parser()
    for word in words:
        subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        if not subs or word not in subs[0].choices:
            return None
        parser = subs[0].choices[word]
    return {option for action in parser._actions for option in action.option_strings}


def readme_claims(text: str | None = None, options=None) -> tuple[list[Claim], list[str]]:
    """(every claim of the README's CLI table, problems with the table itself)."""
    rows, problems = table_rows(README.read_text() if text is None else text)
    claims = []
    for row in rows:
        try:
            claims += row_claims(row, options)
        except ValueError as e:
            problems.append(str(e))
    return claims, problems


# -- matching ---------------------------------------------------------------------------------
def succeeded(entry: dict) -> bool:
    return entry.get("rc") in (None, 0)


def shows(args: Sequence[str], claim: Claim) -> bool:
    """Whether running ``args`` ran ``claim``: its command words first, then the flag as an
    argument of its own (``--flag`` or ``--flag=value``)."""
    n = len(claim.words)
    if tuple(args[:n]) != claim.words:
        return False
    return claim.flag is None or any(
        a == claim.flag or a.startswith(claim.flag + "=") for a in args[n:]
    )


def missing(claims: Iterable[Claim], entries: Iterable[dict]) -> list[Claim]:
    """The claims no successful recorded run shows."""
    runs = [e["argv"] for e in entries if succeeded(e)]
    return [c for c in claims if not any(shows(args, c) for args in runs)]


# -- the plugin -------------------------------------------------------------------------------
class _Run:
    """What the session did, for partial_run()."""

    def __init__(self) -> None:
        self.deselected = 0
        self.collect_errors = 0
        self.finished = 0
        self.outcome: tuple[str, list[Claim]] | None = None


_RUN = pytest.StashKey[_Run]()


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--cli-table-check",
        choices=("auto", "always", "never"),
        default="auto",
        help="check that the suite ran every command and flag of README's CLI table: "
        "auto (only when the whole suite ran), always, never",
    )
    parser.addoption(
        "--cli-record",
        metavar="FILE",
        help="also append each run of the CLI to FILE (JSON lines; several partial runs "
        "checked together: python -m tests.cli_record FILE)",
    )


@pytest.hookimpl(trylast=True)
def pytest_configure(config: pytest.Config) -> None:
    _STATE["config"] = config
    config.stash[_RUN] = _Run()


def pytest_deselected(items: Sequence[pytest.Item]) -> None:
    config = _STATE["config"]
    if config is not None and _RUN in config.stash:
        config.stash[_RUN].deselected += len(items)


def pytest_collectreport(report: pytest.CollectReport) -> None:
    config = _STATE["config"]
    if report.failed and config is not None and _RUN in config.stash:
        config.stash[_RUN].collect_errors += 1


def pytest_runtest_logfinish(nodeid: str) -> None:
    config = _STATE["config"]
    if config is not None and _RUN in config.stash:
        config.stash[_RUN].finished += 1


def _ini_ignores(config: pytest.Config) -> set[str]:
    args = shlex.split(" ".join(config.getini("addopts")))
    found = set()
    for i, arg in enumerate(args):
        if arg.startswith(("--ignore=", "--ignore-glob=")):
            found.add(arg.split("=", 1)[1])
        elif arg in ("--ignore", "--ignore-glob") and i + 1 < len(args):
            found.add(args[i + 1])
    return found


def partial_run(session: pytest.Session) -> str | None:
    """Why this session is not the whole suite (None: it is).

    The rule, from what pytest itself knows rather than from counting test functions in the
    source (parametrize and generated tests make such counts differ): the tests were collected
    from the configured testpaths (no file, folder or node id on the command line), nothing was
    deselected (-k, -m, --deselect, --sw all deselect through pytest_deselected), no --lf, no
    --ignore beyond those of the ini file's addopts, no collection errors, and every collected
    item finished its run (no -x/--maxfail stop, no interrupt). Skipped tests do not make a
    run partial: what they would have run is then reported missing, and rightly so."""
    config = session.config
    state = config.stash[_RUN]
    if config.option.collectonly:
        return "--collect-only"
    if config.args_source != pytest.Config.ArgsSource.TESTPATHS:
        return "paths given on the command line"
    if config.getoption("lf", False):
        return "--lf"
    here = config.invocation_params.dir
    given = set(config.getoption("ignore") or []) | set(config.getoption("ignore_glob") or [])
    extra = {str((here / p).resolve()) for p in given} - {
        str((here / p).resolve()) for p in _ini_ignores(config)
    }
    if extra:
        return f"--ignore {sorted(extra)}"
    if state.deselected:
        return f"{state.deselected} test(s) deselected"
    if state.collect_errors:
        return f"{state.collect_errors} collection error(s)"
    if session.shouldstop or session.shouldfail:
        return "stopped early"
    if _is_worker(config):
        return "an xdist worker (the controller judges every worker's record)"
    if _is_controller(config):  # its workers collect, deselect and run; it sees reports
        chosen = config.option.keyword or config.option.markexpr or config.getoption("deselect")
        if chosen:
            return "tests deselected (-k, -m or --deselect)"
        collected = session.testscollected
    else:
        collected = len(session.items)
    if state.finished != collected:
        return f"{state.finished} of {collected} tests finished"
    return None


def _is_worker(config: pytest.Config) -> bool:
    return getattr(config, "workerinput", None) is not None


def _is_controller(config: pytest.Config) -> bool:
    """An xdist run's controlling process (``-n 2``): the tests run in its workers."""
    return not _is_worker(config) and bool(getattr(config.option, "numprocesses", None))


def session_record(config: pytest.Config) -> list[dict]:
    """This process's runs, and under xdist every worker's (each writes the record file of
    its own temporary folder, which is below the controller's)."""
    runs = list(RECORD)
    if _is_controller(config):
        base = config._tmp_path_factory.getbasetemp()
        for path in sorted(base.glob(f"*/{RECORD_NAME}")):
            runs += load_records([path])
    return runs


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    config = session.config
    if _RUN not in config.stash:
        return
    mode = config.getoption("cli_table_check", "auto")
    reason = None if mode == "always" else (partial_run(session) if mode == "auto" else "off")
    if reason is not None:
        config.stash[_RUN].outcome = (f"not judged ({reason})", [])
        return
    claims, problems = readme_claims()
    runs = session_record(config)
    absent = missing(claims, runs)
    verdict = f"{len(claims)} documented commands and flags, {len(runs)} runs recorded"
    config.stash[_RUN].outcome = (verdict, absent)
    if (absent or problems) and session.exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
    if problems:
        config.stash[_RUN].outcome = (verdict + "; the table: " + "; ".join(problems), absent)


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    outcome = config.stash[_RUN].outcome if _RUN in config.stash else None
    if outcome is None:
        return
    verdict, absent = outcome
    if verdict.startswith("not judged"):
        if config.option.verbose > 0:
            terminalreporter.write_line(f"README CLI table: {verdict}")
        return
    terminalreporter.section("README CLI table")
    terminalreporter.write_line(verdict)
    if absent:
        terminalreporter.write_line(
            f"documented in README.md's CLI table, never run successfully by any test "
            f"({len(absent)}):",
            red=True,
        )
        for claim in absent:
            terminalreporter.write_line(f"  {claim}", red=True)


# -- a record file, after the fact ----------------------------------------------------------
def newest_record() -> Path | None:
    tmp = Path(tempfile.gettempdir())
    found = [*tmp.glob(f"hubforge-tests/run-*/{RECORD_NAME}")]
    found += tmp.glob(f"hubforge-tests/run-*/*/{RECORD_NAME}")  # xdist workers' records
    found += tmp.glob(f"pytest-of-*/pytest-*/{RECORD_NAME}")
    return max(found, key=lambda p: p.stat().st_mtime, default=None)


def load_records(paths: Iterable[Path]) -> list[dict]:
    return [json.loads(line) for path in paths for line in path.read_text().splitlines()]


def main(argv: list[str] | None = None) -> int:
    given = sys.argv[1:] if argv is None else argv
    paths = [Path(a) for a in given] or [p for p in [newest_record()] if p]
    if not paths:
        print("no record file found", file=sys.stderr)
        return 2
    entries = load_records(paths)
    claims, problems = readme_claims()
    absent = missing(claims, entries)
    print(f"{', '.join(map(str, paths))}: {len(entries)} runs recorded, {len(claims)} claims")
    for problem in problems:
        print(f"table: {problem}")
    for claim in absent:
        print(f"never run: {claim}")
    return 1 if absent or problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
