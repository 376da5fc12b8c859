"""Mitogen's linear strategy for the Molecule VMs (test harness only, never shipped).

Under TCG every module process starts Python on an emulated CPU (seconds each);
Mitogen keeps one interpreter per VM and sends it each task. Re-exported from the
installed package so the scenarios name a path inside this repository, not the venv's.
"""

from ansible_mitogen.plugins.strategy.mitogen_linear import StrategyModule  # noqa: F401
