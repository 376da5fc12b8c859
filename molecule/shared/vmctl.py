#!/usr/bin/env python3
"""vmctl: Debian 12 QEMU guests with emulated NUMA topologies, for Molecule.

The command line the playbooks, ./run and the README call (`vmctl.py --help`). The code is the
package vms/ beside this file, one module per job; its docstring (vms/__init__.py) is the reference.
"""

import sys
from pathlib import Path

HERE = str(Path(__file__).resolve().parent)
if HERE not in sys.path:  # vms/ beside this file, also under python -P (no script dir on sys.path)
    sys.path.insert(0, HERE)

from vms.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
