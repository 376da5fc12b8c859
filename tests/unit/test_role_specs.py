"""Each role's defaults/main.yml and meta/argument_specs.yml say the same thing
(as prometheus-community/ansible checks its roles): every default is a documented
option of some entry point, every documented default equals defaults/main.yml's
value, and every documented option of a role with a default has it in both."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

ROLES = sorted(p.parent.parent for p in (Path(__file__).resolve().parents[2] / "roles").glob("*/meta/argument_specs.yml"))


def _load(role: Path) -> tuple[dict, dict]:
    defaults = yaml.safe_load((role / "defaults" / "main.yml").read_text()) or {}
    specs = yaml.safe_load((role / "meta" / "argument_specs.yml").read_text())["argument_specs"]
    return defaults, specs


def _templated(value: object) -> bool:
    return isinstance(value, str) and "{{" in value


@pytest.mark.parametrize("role", ROLES, ids=lambda p: p.name)
def test_every_default_is_documented(role):
    defaults, specs = _load(role)
    documented = {name for spec in specs.values() for name in (spec.get("options") or {})}
    assert sorted(set(defaults) - documented) == []


@pytest.mark.parametrize("role", ROLES, ids=lambda p: p.name)
def test_documented_defaults_are_the_defaults(role):
    defaults, specs = _load(role)
    wrong = []
    for entry, spec in specs.items():
        for name, option in (spec.get("options") or {}).items():
            if name not in defaults:
                if "default" in option:
                    wrong.append(f"{entry}.{name}: documented default {option['default']!r}, none in defaults/main.yml")
                continue
            value = defaults[name]
            if "default" in option:
                if option["default"] != value:
                    wrong.append(f"{entry}.{name}: documented {option['default']!r}, defaults/main.yml {value!r}")
            elif value is not None and not _templated(value) and not isinstance(value, str | dict | list):
                wrong.append(f"{entry}.{name}: defaults/main.yml {value!r} is not documented as the default")
    assert wrong == []


@pytest.mark.parametrize("role", ROLES, ids=lambda p: p.name)
def test_documented_options_have_a_type_and_a_description(role):
    _defaults, specs = _load(role)
    bad = [f"{entry}.{name}" for entry, spec in specs.items() for name, option in (spec.get("options") or {}).items()
           if not option.get("description") or not (option.get("type") or option.get("choices"))]
    assert bad == []
