"""Stand-in for ``python -m sglang.launch_server`` (see standin.py)."""

import sys

from standin import serve

if __name__ == "__main__":
    serve("sglang.launch_server", sys.argv[1:])
