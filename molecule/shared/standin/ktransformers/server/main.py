"""Stand-in for ``python -m ktransformers.server.main`` (see standin.py)."""

import sys

from standin import serve

if __name__ == "__main__":
    serve("ktransformers.server.main", sys.argv[1:])
