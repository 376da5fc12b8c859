"""``python -m sglang.launch_server``: the kt-kernel test server (ktserver.py, staged beside this package)."""

import sys

from ktserver import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
