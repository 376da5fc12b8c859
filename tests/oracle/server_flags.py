"""The servers' own argparse definitions, read from the pinned releases without importing them.

sglang-kt's ``sglang/srt/server_args.py`` imports torch, so it is read as source: every
``parser.add_argument(...)`` call (its option strings and type, nargs, choices, action,
default, required) becomes a ``Flag``; names it refers to (``ServerArgs.x`` defaults,
module-level ``*_CHOICES`` lists) are resolved from the same file. ``FlagTable.parser()``
builds a real ``argparse.ArgumentParser`` from the table, so a planned argv can be parsed
exactly as the server would parse it (issue 14's VM test server reuses this).

    table = sglang_kt()                 # the pinned sglang-kt wheel (wheels.lock)
    table["--kt-numa-nodes"].nargs      # '+'
    table.parser().parse_args(argv)     # argparse.Namespace, or SystemExit like the server

Test equipment only; stdlib only.
"""

from __future__ import annotations

import argparse
import ast
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

try:  # as a module of tests/oracle (sys.path) or imported by path
    import wheels
except ImportError:  # pragma: no cover
    from . import wheels

UNRESOLVED = "<unresolved>"  # a default or choices the source computes at run time

# the server modules and where their argparse definitions live, per pinned release
SGLANG_KT = ("sglang-kt", "sglang/srt/server_args.py", "sglang.launch_server")
LEGACY = ("ktransformers", "ktransformers/server/args.py", "ktransformers.server.main")

_TYPES: dict[str, Any] = {"int": int, "float": float, "str": str, "bool": bool, "list": list}


@dataclass(frozen=True)
class Flag:
    """One ``add_argument`` call, as written in the source."""

    names: tuple[str, ...]
    dest: str
    type: str | None = None  # the source's word: "int", "str", "json.loads", ...
    nargs: str | int | None = None
    choices: tuple | None = None
    action: str | None = None  # "store_true", "BooleanOptionalAction", a custom class name, ...
    action_nargs: int | None = None  # a custom action class's own nargs default (DeprecatedAction: 0)
    default: Any = None
    const: Any = None
    required: bool = False
    line: int = 0

    @property
    def takes_value(self) -> bool:
        if self.action in ("store_true", "store_false", "store_const", "count", "BooleanOptionalAction"):
            return False
        return not (self.action_nargs == 0 and self.nargs is None)


@dataclass
class FlagTable:
    source: str  # "sglang_kt-0.7.2-...whl:sglang/srt/server_args.py"
    module: str  # what follows ``python -m``
    flags: dict[str, Flag] = field(default_factory=dict)  # every option string -> its Flag

    def __getitem__(self, name: str) -> Flag:
        return self.flags[name]

    def __contains__(self, name: object) -> bool:
        return name in self.flags

    def unique(self) -> Iterator[Flag]:
        seen: set[int] = set()
        for flag in self.flags.values():
            if id(flag) not in seen:
                seen.add(id(flag))
                yield flag

    def cite(self, name: str) -> str:
        return f"{self.source}:{self.flags[name].line}"

    def parser(self) -> argparse.ArgumentParser:
        """A real ArgumentParser with every flag; values convert as the server converts them."""
        parser = argparse.ArgumentParser(prog=self.module, add_help=False, exit_on_error=False)
        for flag in self.unique():
            kwargs: dict[str, Any] = {"dest": flag.dest, "required": flag.required}
            default = None if flag.default == UNRESOLVED else flag.default
            action = flag.action
            if action in ("store_true", "store_false", "count"):
                kwargs |= {"action": action}
                if flag.default is not None and flag.default != UNRESOLVED:
                    kwargs["default"] = default
            elif action == "store_const":
                kwargs |= {"action": action, "const": flag.const, "default": default}
            elif action == "BooleanOptionalAction":
                kwargs |= {"action": argparse.BooleanOptionalAction, "default": default}
            elif flag.action_nargs == 0 and flag.nargs is None:  # a custom action taking no value
                kwargs |= {"action": "store_true"}
            else:
                kwargs |= {"default": default, "type": _TYPES.get(flag.type or "str", str)}
                if action == "append":
                    kwargs["action"] = "append"
                if flag.nargs is not None:
                    kwargs["nargs"] = flag.nargs
                if flag.const is not None:
                    kwargs["const"] = flag.const
                if flag.choices and UNRESOLVED not in flag.choices:
                    kwargs["choices"] = list(flag.choices)
            parser.add_argument(*flag.names, **kwargs)
        return parser

    def parse(self, argv: list[str]) -> argparse.Namespace:
        """Parse argv (the words after ``-m MODULE``) as the server would; ValueError when it would exit."""
        try:
            namespace, unknown = self.parser().parse_known_args(argv)
        except argparse.ArgumentError as err:
            raise ValueError(str(err)) from None
        if unknown:
            raise ValueError(f"unrecognized arguments: {' '.join(unknown)}")
        return namespace


# --- extraction -----------------------------------------------------------------------


def _names(tree: ast.Module) -> dict[str, ast.expr]:
    """Module-level ``NAME = value`` assignments."""
    out: dict[str, ast.expr] = {}
    for node in tree.body:
        if isinstance(node, ast.Assign):
            for target in node.targets:
                if isinstance(target, ast.Name):
                    out[target.id] = node.value
    return out


def _class_defaults(tree: ast.Module) -> dict[str, dict[str, ast.expr]]:
    """``class C: attr: T = value`` for every top-level class: C -> attr -> value."""
    out: dict[str, dict[str, ast.expr]] = {}
    for node in tree.body:
        if isinstance(node, ast.ClassDef):
            attrs = out.setdefault(node.name, {})
            for item in node.body:
                if isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name) and item.value:
                    attrs[item.target.id] = item.value
    return out


def _action_nargs(tree: ast.Module) -> dict[str, int | None]:
    """argparse.Action subclasses in the file and their ``__init__``'s nargs default."""
    out: dict[str, int | None] = {}
    for node in tree.body:
        if not isinstance(node, ast.ClassDef):
            continue
        out[node.name] = None
        for item in node.body:
            if isinstance(item, ast.FunctionDef) and item.name == "__init__":
                args = item.args.args[-len(item.args.defaults) :] if item.args.defaults else []
                for arg, default in zip(args, item.args.defaults, strict=True):
                    if arg.arg == "nargs" and isinstance(default, ast.Constant):
                        out[node.name] = default.value
    return out


class _Resolver:
    def __init__(self, tree: ast.Module) -> None:
        self.names = _names(tree)
        self.classes = _class_defaults(tree)

    def value(self, node: ast.expr, depth: int = 0) -> Any:
        if depth > 8:
            return UNRESOLVED
        if isinstance(node, ast.Constant):
            return node.value
        if isinstance(node, ast.List | ast.Tuple | ast.Set):
            items: list = []
            for elt in node.elts:
                if isinstance(elt, ast.Starred):
                    inner = self.value(elt.value, depth + 1)
                    if inner == UNRESOLVED:
                        return UNRESOLVED
                    items += list(inner)
                else:
                    items.append(self.value(elt, depth + 1))
            return sorted(items, key=str) if isinstance(node, ast.Set) else items
        if isinstance(node, ast.Name) and node.id in self.names:
            return self.value(self.names[node.id], depth + 1)
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            owner = self.classes.get(node.value.id, {})
            if node.attr in owner:
                return self._field(owner[node.attr], depth)
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            inner = self.value(node.operand, depth + 1)
            return -inner if isinstance(inner, int | float) else UNRESOLVED
        return UNRESOLVED

    def _field(self, node: ast.expr, depth: int) -> Any:
        # ``x: T = dataclasses.field(default=..., ...)`` / ``field(default_factory=list)``
        if isinstance(node, ast.Call) and ast.unparse(node.func).endswith("field"):
            for kw in node.keywords:
                if kw.arg == "default":
                    return self.value(kw.value, depth + 1)
                if kw.arg == "default_factory" and ast.unparse(kw.value) in ("list", "dict"):
                    return [] if ast.unparse(kw.value) == "list" else {}
            return UNRESOLVED
        return self.value(node, depth + 1)


def extract(text: str, source: str, module: str) -> FlagTable:
    """Every ``*.add_argument("--x", ...)`` call of ``text`` (Python source) as a FlagTable."""
    tree = ast.parse(text)
    resolve = _Resolver(tree)
    actions = _action_nargs(tree)
    table = FlagTable(source, module)
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "add_argument"):
            continue
        names = tuple(a.value for a in node.args if isinstance(a, ast.Constant) and isinstance(a.value, str))
        if not names or not all(n.startswith("-") for n in names):
            continue
        kw = {k.arg: k.value for k in node.keywords if k.arg}
        long_name = next((n for n in names if n.startswith("--")), names[0])
        dest = kw["dest"].value if isinstance(kw.get("dest"), ast.Constant) else long_name.lstrip("-").replace("-", "_")
        action = None
        if "action" in kw:
            node_action = kw["action"]
            action = node_action.value if isinstance(node_action, ast.Constant) else ast.unparse(node_action)
            action = action.removeprefix("argparse.")
        choices = None
        if "choices" in kw:
            resolved = resolve.value(kw["choices"])
            choices = (UNRESOLVED,) if resolved == UNRESOLVED else tuple(resolved)
        flag = Flag(
            names=names,
            dest=dest,
            type=ast.unparse(kw["type"]) if "type" in kw else None,
            nargs=resolve.value(kw["nargs"]) if "nargs" in kw else None,
            choices=choices,
            action=action,
            action_nargs=actions.get(action) if action else None,
            default=resolve.value(kw["default"]) if "default" in kw else None,
            const=resolve.value(kw["const"]) if "const" in kw else None,
            required=bool(resolve.value(kw["required"])) if "required" in kw else False,
            line=node.lineno,
        )
        for name in names:
            table.flags[name] = flag
    return table


def _table(pinned: tuple[str, str, str], version: str | None = None) -> FlagTable:
    name, member, module = pinned
    p = wheels.pin(name, version)
    return extract(wheels.read(name, member, p.version), f"{p.filename}:{member}", module)


def sglang_kt(version: str | None = None) -> FlagTable:
    """sglang-kt's ServerArgs.add_cli_args, from the pinned wheel."""
    return _table(SGLANG_KT, version)


def legacy(version: str = "0.2.1.post1") -> FlagTable:
    """The 0.2/0.3 server's ArgumentParser (ktransformers/server/args.py), from the pinned sdist."""
    return _table(LEGACY, version)


def summary(table: FlagTable) -> str:
    """The table as JSON lines (one flag each), for reading or diffing two releases."""
    return "\n".join(
        json.dumps({k: v for k, v in vars(flag).items() if v not in (None, False)}, default=str)
        for flag in table.unique()
    )


if __name__ == "__main__":  # python tests/oracle/server_flags.py [legacy]
    import sys

    print(summary(legacy() if sys.argv[1:] == ["legacy"] else sglang_kt()))
