"""The Dockerfile, checked without Docker (these machines cannot run it): pinned base, a
wheel that builds from exactly what the build stage copies, the binaries of the built-in
types, a non-root user, a default command the CLI accepts, a health check on /healthz."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from cli_helpers import REPO
from skiplock.cli import commands as cli

Instruction = tuple[str, str]  # (keyword, arguments)


def parse_dockerfile(text: str) -> list[list[Instruction]]:
    """The instructions of each stage, continuation lines joined and comments dropped."""
    stages: list[list[Instruction]] = []
    for line in re.sub(r"\\\n", " ", text).splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        keyword, _, arguments = line.partition(" ")
        if keyword.upper() == "FROM":
            stages.append([])
        stages[-1].append((keyword.upper(), arguments.strip()))
    return stages


STAGES = parse_dockerfile((REPO / "Dockerfile").read_text())
BUILD, FINAL = STAGES[0], STAGES[-1]


def arguments_of(stage: list[Instruction], keyword: str) -> list[str]:
    return [arguments for name, arguments in stage if name == keyword]


def exec_form(arguments: str) -> list[str]:
    """The JSON array of a CMD or HEALTHCHECK CMD (exec form: no shell in between)."""
    argv = json.loads(arguments)
    assert isinstance(argv, list) and all(isinstance(a, str) for a in argv)
    return argv


def test_every_stage_starts_from_a_python_patch_release_not_a_moving_tag() -> None:
    images = [arguments.split()[0] for stage in STAGES for arguments in arguments_of(stage, "FROM")]
    assert len(images) == 2
    for image in images:
        assert re.fullmatch(r"python:3\.11\.\d+-slim-bookworm(@sha256:[0-9a-f]{64})?", image)
    assert len(set(images)) == 1  # the wheel is built on the Python it runs on


def test_final_stage_installs_graphviz_and_ffmpeg_without_recommends() -> None:
    installs = [run for run in arguments_of(FINAL, "RUN") if "apt-get install" in run]
    assert len(installs) == 1
    words = installs[0].split()
    assert {"graphviz", "ffmpeg", "--no-install-recommends"} <= set(words)
    assert "rm -rf /var/lib/apt/lists/*" in installs[0]  # no package lists left in the layer


def test_final_stage_installs_the_wheel_built_in_the_first_stage() -> None:
    build_name = arguments_of(BUILD, "FROM")[0].split()[-1]
    assert any("pip wheel" in run and "--no-deps" in run for run in arguments_of(BUILD, "RUN"))
    assert any(copy.startswith(f"--from={build_name} ") for copy in arguments_of(FINAL, "COPY"))
    assert any("pip install" in run and ".whl" in run for run in arguments_of(FINAL, "RUN"))


def test_runs_as_a_non_root_user_made_in_the_image() -> None:
    keywords = [keyword for keyword, _ in FINAL]
    user = arguments_of(FINAL, "USER")[-1]
    assert user not in {"root", "0"}
    assert any(f"useradd --uid 10001 --gid {user}" in run for run in arguments_of(FINAL, "RUN"))
    assert len(keywords) - 1 - keywords[::-1].index("USER") < keywords.index("CMD")
    assert keywords.index("CMD") == len(keywords) - 1


def test_default_command_is_skiplock_serve_on_every_interface_and_the_exposed_port() -> None:
    argv = exec_form(arguments_of(FINAL, "CMD")[-1])
    assert argv[0] == "skiplock"  # the console script pyproject.toml installs
    assert 'skiplock = "skiplock.cli:main"' in (REPO / "pyproject.toml").read_text()
    args = cli.build_parser().parse_args(argv[1:])  # SystemExit if a flag were unknown
    assert args.run is cli._run_serve
    assert args.host == "0.0.0.0"  # noqa: S104  (inside a container, to be published)
    assert arguments_of(FINAL, "EXPOSE") == [str(args.port)]


def test_the_documented_worker_alternative_is_a_real_command() -> None:
    text = (REPO / "Dockerfile").read_text()
    assert "skiplock skiplock worker" in text and "--no-healthcheck" in text
    assert cli.build_parser().parse_args(["worker"]).run is cli._run_worker


def test_healthcheck_asks_healthz_with_python_urllib() -> None:
    (check,) = arguments_of(FINAL, "HEALTHCHECK")
    options, _, command = check.partition(" CMD ")
    assert "--timeout=" in options and "--interval=" in options
    argv = exec_form(command)
    assert argv[:2] == ["python", "-c"]
    assert "urllib.request.urlopen('http://127.0.0.1:8000/healthz'" in argv[2]
    compile(argv[2], "HEALTHCHECK", "exec")  # a SyntaxError would make the check always fail


def test_dockerignore_keeps_venvs_git_and_caches_out_of_the_context() -> None:
    ignored = set((REPO / ".dockerignore").read_text().split())
    assert {".git", ".venv", "bench/.venv", "build", "tests/artifacts"} <= ignored
    assert {".pytest_cache", ".mypy_cache", ".ruff_cache", "**/__pycache__"} <= ignored


def copied_by_build_stage() -> list[str]:
    """The paths the build stage's COPY lines take from the context (all but the target)."""
    sources = []
    for arguments in arguments_of(BUILD, "COPY"):
        assert not arguments.startswith("--from")
        sources += arguments.split()[:-1]
    return sources


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_wheel_builds_from_what_the_build_stage_copies_and_holds_the_whole_package(
    tmp_path: Path,
) -> None:
    context = tmp_path / "context"
    for name in copied_by_build_stage():
        source, target = REPO / name, context / name
        if source.is_dir():
            shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path / "out"), "."],
        cwd=context,
        check=True,
    )
    (wheel,) = (tmp_path / "out").glob("skiplock-*.whl")
    packed = set(zipfile.ZipFile(wheel).namelist())
    package = REPO / "service" / "skiplock"
    expected = {
        f"skiplock/{path.relative_to(package).as_posix()}"
        for path in package.rglob("*")
        if path.is_file() and "__pycache__" not in path.parts
    }
    assert expected - packed == set()  # every module, subpackage and data file
    assert "skiplock/builtin/video.py" in packed
    assert any(re.fullmatch(r"skiplock/sql/\d{4}\..+\.sql", name) for name in packed)
    assert "skiplock/sql/queries/claim_jobs.sql" in packed
