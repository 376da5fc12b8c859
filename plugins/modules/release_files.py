#!/usr/bin/python
# Copyright: ktfleet contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

DOCUMENTATION = r"""
---
module: release_files
short_description: Write a release's directories, unit and environment file in one call, verified, all or nothing
version_added: 0.1.0
description:
  - Compares the wanted directories and files with what is on the host and makes them so in one module run
    (one round trip for what a C(file) loop and two C(template) tasks did).
  - A file whose content changes is written to a temporary file beside it; a file marked O(files[].verify) is
    checked with C(systemd-analyze verify) (under its real name) before anything is replaced, in check mode too,
    where nothing is written. Only when every file passed are the old ones replaced (C(rename), atomic), each
    backed up first; a replace that fails puts back those already replaced, so no host is left half-changed.
  - The same input again changes nothing.
author:
  - ktfleet contributors (@ktfleet)
options:
  directories:
    description: Directories to create (with their parents) and give a mode and owner.
    type: list
    elements: dict
    default: []
    suboptions:
      path:
        description: The directory.
        type: path
        required: true
      mode:
        description: Its mode, as an octal string.
        type: str
        required: true
      owner:
        description: Its owner; unchanged when not given.
        type: str
      group:
        description: Its group; unchanged when not given.
        type: str
  files:
    description: Files to write, each with a name under which RV(files) reports it.
    type: list
    elements: dict
    default: []
    suboptions:
      name:
        description: The key of this file in RV(files).
        type: str
        required: true
      path:
        description: The file.
        type: path
        required: true
      content:
        description: Its content, shown in C(--diff). Give this or O(files[].secret_content).
        type: str
      secret_content:
        description: Its content, never shown (no C(--diff) text, not logged).
        type: str
      mode:
        description: Its mode, as an octal string.
        type: str
        required: true
      owner:
        description: Its owner; unchanged (or the writer's, for a new file) when not given.
        type: str
      group:
        description: Its group; unchanged when not given.
        type: str
      verify:
        description: A systemd unit, verified with C(systemd-analyze verify) before it replaces the old one.
        type: bool
        default: false
  backup:
    description: Keep a copy of each replaced file beside it, returned as C(backup_file) in RV(files).
    type: bool
    default: true
  stand_ins:
    description:
      - Paths a unit names that may not exist yet in check mode (such as the interpreter the install task would
        create), each mapped to an existing executable that C(systemd-analyze verify) checks in its place when the
        path is missing. Outside check mode a missing path fails verification as it should.
    type: dict
    default: {}
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details: Units that would change are still verified with C(systemd-analyze verify); nothing is written.
  diff_mode:
    support: full
    details: Secret files show only that they change.
  platform:
    platforms: posix
notes:
  - Needs C(systemd-analyze) on the host for files with O(files[].verify).
seealso:
  - module: ansible.builtin.template
"""

EXAMPLES = r"""
- name: Write the directories, the environment file and the unit
  ktfleet.numa.release_files:
    directories:
      - {path: /etc/ktfleet, mode: "0700", owner: root, group: root}
    files:
      - name: env
        path: /etc/ktfleet/ktransformers.env
        secret_content: "{{ lookup('ansible.builtin.template', 'ktransformers.env.j2') }}"
        mode: "0600"
      - name: unit
        path: /etc/systemd/system/ktransformers.service
        content: "{{ lookup('ansible.builtin.template', 'ktransformers.service.j2') }}"
        mode: "0644"
        verify: true
  register: release
"""

RETURN = r"""
files:
  description:
    - Per name of O(files), C(path), C(changed), C(created) (there was no file), C(what) (what differed) and
      C(backup_file) when an existing file was replaced.
  returned: always
  type: dict
  sample: {"unit": {"path": "/etc/systemd/system/ktransformers.service", "changed": true, "what": ["content"],
                    "backup_file": "/etc/systemd/system/ktransformers.service.4711.2026-12-01@14:20:00~"}}
directories:
  description: Per path of O(directories), C(changed) and C(what) differed.
  returned: always
  type: dict
verified:
  description: The files that C(systemd-analyze verify) passed in this run.
  returned: always
  type: list
  elements: str
"""

from ansible.module_utils.basic import AnsibleModule  # noqa: E402

from ansible_collections.ktfleet.numa.plugins.module_utils.release_files import (  # noqa: E402
    ReleaseError,
    Wanted,
    WantedDir,
    apply,
)


def _mode(module, value, what):
    try:
        mode = int(str(value), 8)
    except ValueError:
        module.fail_json(msg=f"{what}: mode {value!r} is not an octal mode such as 0644")
    if not 0 <= mode <= 0o7777:
        module.fail_json(msg=f"{what}: mode {value!r} is out of range")
    return mode


def _run(module, argv):
    try:
        return module.run_command(argv, handle_exceptions=False)
    except OSError as exc:
        return 127, "", f"{argv[0]}: {exc} (is systemd installed?)"


def main():
    module = AnsibleModule(
        argument_spec=dict(
            directories=dict(type="list", elements="dict", default=[], options=dict(
                path=dict(type="path", required=True),
                mode=dict(type="str", required=True),
                owner=dict(type="str"),
                group=dict(type="str"),
            )),
            files=dict(type="list", elements="dict", default=[], options=dict(
                name=dict(type="str", required=True),
                path=dict(type="path", required=True),
                content=dict(type="str"),
                secret_content=dict(type="str", no_log=True),
                mode=dict(type="str", required=True),
                owner=dict(type="str"),
                group=dict(type="str"),
                verify=dict(type="bool", default=False),
            ), mutually_exclusive=[("content", "secret_content")],
                required_one_of=[("content", "secret_content")]),
            backup=dict(type="bool", default=True),
            stand_ins=dict(type="dict", default={}),
        ),
        supports_check_mode=True,
    )
    p = module.params
    dirs = [WantedDir(d["path"], _mode(module, d["mode"], d["path"]), d["owner"], d["group"]) for d in p["directories"]]
    files = []
    for f in p["files"]:
        secret = f["secret_content"] is not None
        content = f["secret_content"] if secret else f["content"]
        files.append(Wanted(f["name"], f["path"], content.encode("utf-8"), _mode(module, f["mode"], f["path"]),
                            f["owner"], f["group"], secret=secret, verify=f["verify"]))
    try:
        out = apply(dirs, files, lambda argv: _run(module, argv), check_mode=module.check_mode,
                    backup=p["backup"], stand_ins={str(k): str(v) for k, v in p["stand_ins"].items()})
    except ReleaseError as exc:
        module.fail_json(msg=str(exc))
    result = dict(changed=out.changed, files=out.files, directories=out.directories, verified=out.verified)
    if module._diff and out.diff:
        result["diff"] = out.diff
    module.exit_json(**result)


if __name__ == "__main__":
    main()
