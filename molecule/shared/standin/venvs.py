"""Put the stand-in server where the role's unit looks for the real one (test equipment).

One venv per release, named as the role names it
(``<install_dir>/<backend>-<name>-<version>_...``), made with ``python3 -m venv
--without-pip``; a ``.pth`` file puts the stand-in (this directory: baked into
the VM image at /usr/local/lib/ktfleet-standin) on its path, so the venv
imports ``sglang/launch_server.py`` and ``ktransformers/server/main.py``; a
dist-info per package names the release it stands in for, as pip's metadata
would (ktfleet.numa.server_check reads it). A venv may also get
``standin-fail`` (its server fails the health check) and
``standin-curve.json`` (its throughput curve).

Run in the guest by molecule/shared/prepare.yml as one command (under TCG every
module run costs seconds)::

    python3 venvs.py '{"install_dir": "/opt/ktfleet", "backend": "sglang-kt",
                       "releases": [{"kt-kernel": "0.7.2", "sglang-kt": "0.7.2"}],
                       "fail": ["/opt/ktfleet/..."], "curve": {"knee": 6, "peak": 40.0}}'

It prints {"changed": [paths written]}; a second run writes nothing. The unit
tests build their venvs with the same function.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

STANDIN = Path(__file__).resolve().parent


def venv_name(backend: str, release: dict[str, str]) -> str:
    """The role's name for a release's venv: sglang-kt-kt-kernel-0.7.2_sglang-kt-0.7.2."""
    return f"{backend}-" + "_".join(f"{name}-{version}" for name, version in release.items())


def _write(path: Path, text: str, changed: list[str]) -> None:
    if not path.is_file() or path.read_text(encoding="utf-8") != text:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        changed.append(str(path))


def standin_venv(venv: Path, dists: dict[str, str], standin: Path = STANDIN,
                 changed: list[str] | None = None) -> Path:
    """A venv at ``venv`` importing ``standin``, with a dist-info per package; its python."""
    changed = [] if changed is None else changed
    if not (venv / "bin/python").exists():
        subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
        changed.append(str(venv))
    site = next((venv / "lib").glob("python3*/site-packages"))
    _write(site / "ktfleet-standin.pth", f"{standin}\n", changed)
    for dist, version in dists.items():
        _write(site / f"{dist.replace('-', '_')}-{version}.dist-info/METADATA",
               f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n"
               f"Summary: ktfleet stand-in (test equipment) for {dist} {version}\n", changed)
    return venv / "bin/python"


def prepare(spec: dict) -> list[str]:
    """Every venv, failure marker and curve ``spec`` asks for; the paths written."""
    changed: list[str] = []
    install_dir, backend = Path(spec["install_dir"]), spec["backend"]
    venvs = []
    for release in spec["releases"]:
        venv = install_dir / venv_name(backend, release[backend])
        standin_venv(venv, release[backend], changed=changed)
        venvs.append(venv)
    for path in spec.get("fail") or []:
        _write(Path(path) / "standin-fail", "told to fail by molecule prepare\n", changed)
    if spec.get("curve"):
        for venv in venvs:
            _write(venv / "standin-curve.json", json.dumps(spec["curve"]) + "\n", changed)
    return changed


if __name__ == "__main__":
    print(json.dumps({"changed": prepare(json.loads(sys.argv[1]))}))
