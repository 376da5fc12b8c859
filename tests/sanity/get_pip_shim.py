"""Stand-in for ansible-test's get-pip bootstrap script.

ansible-test downloads get-pip.py from a CI host these machines cannot reach;
this does the same job from the standard library (ensurepip) plus PyPI.
./run lint copies it to ~/.ansible/test/cache/get_pip_<version>.py.
"""

import ensurepip
import os
import subprocess
import sys

args = [a for a in sys.argv[1:] if a not in ("--no-setuptools", "--no-wheel")]
# ansible-test clears the environment; keep the system's CA bundle for PyPI.
bundle = "/etc/ssl/certs/ca-certificates.crt"
if os.path.exists(bundle):
    args = ["--cert", bundle, *args]
ensurepip.bootstrap(upgrade=True)
sys.exit(subprocess.call([sys.executable, "-m", "pip", "install", *args]))
