"""plain() (plugin_utils/plain.py): Ansible's tagged containers as plain values, for pydantic and for JSON."""

from __future__ import annotations

import pytest

from ansible_collections.ktfleet.numa.plugins.plugin_utils.plain import plain


class Tagged(str):
    pass


def test_containers_and_subclasses_become_plain():
    value = plain({1: (Tagged("x"), True, None, 2.5)})
    assert value == {"1": ["x", True, None, 2.5]}
    assert type(value["1"][0]) is str


def test_other_values_pass_unless_a_path_is_named():
    obj = object()
    assert plain([obj]) == [obj]
    with pytest.raises(ValueError, match=r"^host: facts\.a\[0\]: object cannot be saved as JSON$"):
        plain({"a": [obj]}, "host: facts")

    class Mine(ValueError):
        pass

    with pytest.raises(Mine):
        plain(obj, "v", Mine)
