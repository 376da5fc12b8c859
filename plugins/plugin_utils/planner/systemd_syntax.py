"""systemd unit-file quoting: argv and environment as systemd parses them back.

systemd splits ExecStart= on whitespace, honours C-style double quotes, and
expands ``%`` specifiers and ``$VAR`` in every word; an argument is therefore
quoted when it has whitespace or quotes, and ``%``/``$`` are always doubled.
"""

from __future__ import annotations

import ipaddress
import posixpath
import re
from collections.abc import Iterable, Mapping

from ..errors import PlanError

_NEEDS_QUOTES = re.compile(r'[\s"\'\\;]')


def quote_word(word: object) -> str:
    """One argv word in unit-file syntax (systemd.service(5), "COMMAND LINES")."""
    text = str(word)
    if "\n" in text or "\x00" in text:
        raise ValueError(f"a systemd argument cannot contain a newline or NUL: {text!r}")
    text = text.replace("%", "%%").replace("$", "$$")
    if text and not _NEEDS_QUOTES.search(text):
        return text
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def exec_line(argv: Iterable[object]) -> str:
    """An argv list as the value of ExecStart=."""
    words = [quote_word(w) for w in argv]
    if not words:
        raise ValueError("an ExecStart= command line needs at least the program")
    if not words[0].lstrip('"').startswith("/"):
        raise ValueError(f"ExecStart= needs an absolute program path, got {argv!r}")
    return " ".join(words)


def environment_lines(env: Mapping[str, object]) -> list[str]:
    """Environment= assignments, one per variable, sorted for stable diffs."""
    lines = []
    for key in sorted(env):
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key):
            raise ValueError(f"not a valid environment variable name: {key!r}")
        value = str(env[key]).replace("%", "%%")
        if _CONTROL.search(value):
            raise ValueError(f"environment variable {key} cannot contain a newline or control character")
        lines.append('"' + f"{key}={value}".replace("\\", "\\\\").replace('"', '\\"') + '"')
    return lines


# --- single values: unit lines that are not argv, paths, names, the environment file --------
#
# Every value the role puts into a unit line, the environment file or a path goes
# through one of these, which name the variable it came from (``PlanError``).

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
# useradd's default NAME_REGEX (Debian adduser.conf), also valid for systemd's User=/Group=
_ACCOUNT = re.compile(r"[a-z_][a-z0-9_-]{0,31}")
# absolute, normalised, no character systemd or a shell would read specially
_PATH_CHARS = re.compile(r"[A-Za-z0-9._+@/-]+")
# a unit name without its suffix: systemd's unit-name characters less "@" and "\\"
_SERVICE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.:-]{0,199}")
# systemd env-file.c: inside double quotes a backslash escapes only these (SHELL_NEED_ESCAPE)
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_ENV_FILE_ESCAPE = re.compile(r'(["\\`$])')


def text(variable: str, value: object, *, empty: bool = False) -> str:
    """``value`` as one line of valid UTF-8 without control characters, or a PlanError."""
    if isinstance(value, bytes):
        try:
            value = value.decode("utf-8")
        except UnicodeDecodeError:
            raise PlanError(variable, "is not valid UTF-8") from None
    if not isinstance(value, str):
        raise PlanError(variable, f"must be a string, got {type(value).__name__}")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise PlanError(variable, "is not valid UTF-8") from None
    if not value and not empty:
        raise PlanError(variable, "must not be empty")
    bad = _CONTROL.search(value)
    if bad:
        raise PlanError(
            variable, f"must be one line without control characters; it holds {bad.group()!r} at {bad.start()}"
        )
    return value


def unit_value(variable: str, value: object) -> str:
    """A free-text unit value (Description=): specifiers escaped, systemd's stripping refused."""
    line = text(variable, value)
    if line != line.strip():
        raise PlanError(variable, f"must not start or end with whitespace (systemd strips it): {line!r}")
    if line.endswith("\\"):
        raise PlanError(variable, f"must not end with a backslash (systemd joins the next line): {line!r}")
    return line.replace("%", "%%")


def account(variable: str, value: object) -> str:
    """A user or group name for User=/Group= and useradd; never root."""
    name = text(variable, value)
    if not _ACCOUNT.fullmatch(name):
        raise PlanError(
            variable,
            f"must be a user/group name (lower-case letters, digits, '_' or '-', not starting with a digit or '-', "
            f"at most 32 characters), got {name!r}",
        )
    if name == "root":
        raise PlanError(variable, "must not be root: the server runs as its own unprivileged account (e.g. ktfleet)")
    return name


def path(variable: str, value: object, *, root_ok: bool = False) -> str:
    """An absolute path as it appears in unit lines, file tasks and shell words."""
    where = text(variable, value)
    if not where.startswith("/") or posixpath.normpath(where) != where or where.startswith("//"):
        raise PlanError(variable, f"must be an absolute path without '.', '..', '//' or a trailing '/', got {where!r}")
    if not _PATH_CHARS.fullmatch(where):
        raise PlanError(
            variable, f"may hold only letters, digits and . _ + @ - / (no spaces, quotes, '%' or '$'), got {where!r}"
        )
    if where == "/" and not root_ok:
        raise PlanError(variable, "must not be / itself")
    return where


def unit_name(variable: str, value: object) -> str:
    """A unit name without ``.service``: also a file name under /etc, so no '/' and no '..'."""
    name = text(variable, value)
    if not _SERVICE.fullmatch(name) or ".." in name or name.endswith(".service"):
        raise PlanError(
            variable,
            f"must be a unit name without .service: letters, digits, '_', '.', ':' or '-', "
            f"no '/' or '..', at most 200 characters, got {name!r}",
        )
    return name


def env_file(entries: Iterable[tuple[str, str, object]]) -> str:
    """The content of an EnvironmentFile= that systemd reads back byte for byte.

    ``entries`` are (variable name in the file, role variable it comes from, value).
    systemd's parser (src/basic/env-file.c, parse_env_file_internal) strips
    unquoted values and drops a backslash before any other character; inside
    double quotes it keeps every byte except that a backslash escapes
    `` " \\ ` $ `` (SHELL_NEED_ESCAPE) and escapes a newline away. So every value
    is double-quoted with those four escaped; control characters (a newline
    would start a variable of its own in most readers) are refused.
    """
    lines = []
    for key, variable, value in sorted(entries, key=lambda e: e[0]):
        if not _ENV_NAME.fullmatch(key):
            raise PlanError(variable, f"not a valid environment variable name: {key!r}")
        quoted = _ENV_FILE_ESCAPE.sub(r"\\\1", text(variable, value, empty=True))
        lines.append(f'{key}="{quoted}"\n')
    return "".join(lines)


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


# sglang-kt takes every flag from a YAML file too: ``--config FILE`` (sglang/srt/server_args.py,
# prepare_server_args; sglang/srt/server_args_config_parser.py merges ``api-key: ...`` into
# ``--api-key`` in process), so the key never reaches /proc/<pid>/cmdline. ExecStartPre writes
# that file from the environment file's variable into the 0700 RuntimeDirectory (tmpfs, gone
# at stop); JSON strings are YAML double-quoted scalars.
SGLANG_KEY_FILE = "${RUNTIME_DIRECTORY}/sglang.yaml"
_WRITE_KEY_FILE = (
    "import json, os; "
    'path = os.path.join(os.environ["RUNTIME_DIRECTORY"], "sglang.yaml"); '
    'open(path, "w").write("api-key: " + json.dumps(os.environ["KTFLEET_API_KEY"]) + chr(10))'
)


def key_config(interpreter: str) -> dict[str, str]:
    """The unit lines that give sglang-kt its API key through --config instead of argv."""
    return {"exec_start_pre": exec_line([interpreter, "-c", _WRITE_KEY_FILE]), "args": f" --config {SGLANG_KEY_FILE}"}


def _under_home(where: str) -> bool:
    return any(where == top or where.startswith(top + "/") for top in ("/home", "/root", "/run/user"))


def unit_fields(
    *,
    backend: str,
    model_name: object,
    user: object,
    group: object,
    state_dir: object,
    service_name: object,
    install_dir: object,
    python: object,
    system_root: object,
    api_key: object,
    listen_host: object,
    allow_unauthenticated: bool,
    environment: Mapping[str, object],
    plan_environment: Mapping[str, object],
    model_path: object = "",
    weights_path: object = "",
    interpreter: object = "",
) -> dict[str, object]:
    """Every role variable that reaches a unit line, the environment file or a path, checked.

    Returns the unit-syntax forms the template pastes (Description=, User=,
    Group=, WorkingDirectory=, the Environment= lines); argv words go through
    ``exec_line``. Raises PlanError naming the variable. The API key is checked
    but never returned (the environment file renders it with ``env_file``).
    """
    service = unit_name("ktfleet_service_name", service_name)
    text("ktfleet_api_key", api_key, empty=True)
    host = text("ktfleet_listen_host", listen_host)
    # sglang-kt enforces --api-key on every route (sglang/srt/utils/auth.py, add_api_key_middleware);
    # ktfleet passes no key to the legacy server, so there an external address is open.
    guarded = bool(api_key) and backend == "sglang-kt"
    if not _loopback(host) and not guarded and not allow_unauthenticated:
        raise PlanError(
            "ktfleet_listen_host",
            f"{host} is reachable from other machines but the API has no key "
            f"({'the legacy server gets none' if backend == 'legacy' else 'ktfleet_api_key is empty'}): "
            "set ktfleet_api_key (sglang-kt), keep the default 127.0.0.1 behind a proxy, "
            "or set ktfleet_allow_unauthenticated: true to serve it open on purpose",
        )
    reserved = {"KTFLEET_API_KEY"}
    clash = sorted((set(plan_environment) | reserved) & set(environment))
    if clash:
        planned = ", ".join(f"{k}={plan_environment[k]}" for k in clash if k in plan_environment)
        raise PlanError(
            "ktfleet_environment",
            f"sets {', '.join(clash)}, which ktfleet sets itself ({planned or 'the API key comes from ktfleet_api_key'}); "
            "remove them from ktfleet_environment (the plan's values are what the planner decided)",
        )
    for key, value in environment.items():
        text(f"ktfleet_environment.{key}", value, empty=True)
    try:
        env_lines = environment_lines({**plan_environment, **environment})
    except ValueError as exc:
        raise PlanError("ktfleet_environment", str(exc)) from None
    if python:
        path("ktfleet_python", python)
    # ProtectHome=yes hides /home, /root and /run/user; a model or interpreter kept there stays readable
    data = [text(f"ktfleet_model.{k}", v) for k, v in (("model_path", model_path), ("weights_path", weights_path)) if v]
    read_home = [p for p in (*data, str(python or ""), str(install_dir)) if _under_home(p)]
    return {
        "key_config": key_config(path("ktfleet_python", interpreter)) if guarded else None,
        "protect_home": "read-only" if read_home else "yes",
        "service_name": service,
        "description": unit_value("ktfleet_model.name", f"KTransformers {backend} server ({text('ktfleet_model.name', model_name)})"),
        "user": account("ktfleet_user", user),
        "group": account("ktfleet_group", group),
        "working_directory": path("ktfleet_state_dir", state_dir),
        "install_dir": path("ktfleet_install_dir", install_dir),
        "system_root": path("ktfleet_system_root", system_root, root_ok=True),
        "environment": env_lines,
    }


def existing_account(variable: str, name: str, entry: object) -> bool:
    """Whether the service account exists already (getent passwd ``entry``: [pw, uid, gid, gecos, home, shell]).

    An existing account is used as it is and never modified (the role's user task
    would otherwise change its shell and home); uid 0 is refused under any name.
    """
    if not entry:
        return False
    if not isinstance(entry, (list, tuple)) or len(entry) < 2:
        raise PlanError(variable, f"unexpected account entry for {name!r}: {entry!r}")
    if str(entry[1]) == "0":
        raise PlanError(variable, f"{name!r} has uid 0 (root): the server must run as an unprivileged account")
    return True
