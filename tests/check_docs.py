"""ansible-doc must render every module and filter of the collection, cleanly.

Run by `./run lint`; exits non-zero naming each plugin whose docs fail or warn.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
ANSIBLE_DOC = Path(sys.executable).parent / "ansible-doc"


def plugins(kind: str) -> list[str]:
    out = subprocess.run(
        [ANSIBLE_DOC, "-t", kind, "--list", "--json", "ktfleet.numa"],
        cwd=REPO, capture_output=True, text=True, check=True,
    )
    return sorted(json.loads(out.stdout))


def main() -> int:
    failures = []
    count = 0
    for kind in ("module", "filter"):
        names = plugins(kind)
        if not names:
            failures.append(f"no {kind} plugins found in ktfleet.numa")
        for name in names:
            count += 1
            run = subprocess.run([ANSIBLE_DOC, "-t", kind, name], cwd=REPO, capture_output=True, text=True)
            noise = [line for line in run.stderr.splitlines() if line.strip()]
            if run.returncode != 0 or noise:
                failures.append(f"{kind} {name}: rc={run.returncode} {' | '.join(noise)[:500]}")
    for failure in failures:
        print(f"FAIL {failure}")
    print(f"ansible-doc: {count - len(failures)} of {count} plugins render cleanly")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
