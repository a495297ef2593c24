"""The container images, checked as text: no Docker engine is available to build them here.

What is checked is what a build could not fix afterwards: every base image pinned to a
release (never ``latest`` or a bare major version), the final stage running as a user that
is not root, no secret baked in, the build context holding only what the images need, and
the entry point and its commands (worker, controller, api, and the Lambda handler) being
ones this code base really has.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from gpufleet.cli import app
from gpufleet.deploy.stack.names import Names
from gpufleet.deploy.stack.template import build

REPO = Path(__file__).resolve().parents[2]
DOCKERFILES = [REPO / "deploy/docker/Dockerfile", REPO / "deploy/docker/Dockerfile.cuda"]
_PINNED = re.compile(r"^[\w./-]+(:[\w.-]*\d+\.\d+\.\d+[\w.-]*)?(@sha256:[0-9a-f]{64})?$")


def _instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n", " ", path.read_text())
    found = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            found.append((word.upper(), rest.strip()))
    return found


def _stages(path: Path) -> list[list[tuple[str, str]]]:
    stages: list[list[tuple[str, str]]] = [[]]
    for instruction in _instructions(path):
        if instruction[0] == "FROM":
            stages.append([])
        stages[-1].append(instruction)
    return stages


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: p.name)
def test_every_base_image_is_pinned_to_a_release(path: Path) -> None:
    args = dict(re.match(r"(\w+)=(\S+)", rest).groups()  # type: ignore[union-attr]
                for word, rest in _instructions(path) if word == "ARG" and "=" in rest)
    bases = [rest.split()[0] for word, rest in _instructions(path) if word == "FROM"]
    assert len(bases) == 2  # a build stage and a runtime stage without the build tools
    for base in bases:
        image = re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], base)
        tag = image.partition(":")[2]
        assert _PINNED.match(image) and tag, f"{path.name}: {image} is not pinned to x.y.z"
        assert "latest" not in tag


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: p.name)
def test_the_image_runs_as_a_user_that_is_not_root(path: Path) -> None:
    final = _stages(path)[-1]
    users = [rest for word, rest in final if word == "USER"]
    assert users, f"{path.name}: the final stage sets no USER (it would run as root)"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0")
    # And that user is made in the same stage, with that uid
    assert any(word == "RUN" and f"--uid {user}" in rest for word, rest in final)


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: p.name)
def test_no_secret_is_baked_in(path: Path) -> None:
    text = path.read_text()
    assert not re.search(r"AKIA[0-9A-Z]{16}|-----BEGIN|aws_secret_access_key", text, re.I)
    for word, rest in _instructions(path):
        if word in ("ENV", "ARG"):
            names = re.findall(r"(\w+)=", rest) or [rest.split()[0]]
            assert not [n for n in names if re.search(r"KEY|SECRET|PASSWORD|TOKEN", n)], rest
    # What is copied in is the package's source and metadata, nothing else
    copied = [source for word, rest in _instructions(path) if word == "COPY"
              and not rest.startswith("--from") for source in rest.split()[:-1]]
    assert sorted(copied) == ["README.md", "pyproject.toml", "src"]


def test_the_build_context_holds_only_what_the_images_need() -> None:
    lines = [line for line in (REPO / ".dockerignore").read_text().splitlines()
             if line and not line.startswith("#")]
    assert lines[0] == "*"  # everything out, then let in what is needed
    assert {line for line in lines if line.startswith("!")} == {
        "!pyproject.toml", "!README.md", "!src/"}
    assert {"**/.env", "**/*.pem", "**/*.key"} <= set(lines)


@pytest.mark.parametrize("command", ["worker", "controller", "api"])
def test_the_entry_point_has_each_role_as_a_command(command: str) -> None:
    for path in DOCKERFILES:
        final = _stages(path)[-1]
        assert ("ENTRYPOINT", '["gpufleet"]') in final
    result = CliRunner().invoke(app, [command, "--help"])
    assert result.exit_code == 0, result.output


def test_the_lambda_entry_point_is_in_the_cpu_image() -> None:
    function = build(Names()).resources["TriggerFunction"].to_dict()["Properties"]
    assert function["ImageConfig"]["EntryPoint"] == ["python", "-m", "awslambdaric"]
    assert "awslambdaric==" in DOCKERFILES[0].read_text()
    module, _, name = function["ImageConfig"]["Command"][0].rpartition(".")
    assert callable(getattr(__import__(module, fromlist=[name]), name))
