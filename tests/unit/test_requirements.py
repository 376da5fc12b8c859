"""requirements-run.txt (what ./run demo installs) is the pinned subset of requirements.txt."""

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def pins(name: str) -> dict[str, str]:
    lines = (REPO / name).read_text().splitlines()
    pairs = (line.split("==", 1) for line in lines if line.strip() and not line.startswith("#"))
    return {package.lower().replace("_", "-"): version for package, version in pairs}


def test_the_demo_set_is_pinned_exactly_as_the_test_set():
    run, test = pins("requirements-run.txt"), pins("requirements.txt")
    assert run and {p: test.get(p) for p in run} == run


def test_the_demo_set_holds_what_the_project_depends_on():
    # pyproject.toml's direct dependencies; their own dependencies are proven by
    # ./run freshroot, which runs the demo on a root that has only this set
    run = pins("requirements-run.txt")
    assert {"ansible-core", "jinja2", "pydantic", "psutil"} <= run.keys()
