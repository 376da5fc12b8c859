# Copyright: ktfleet contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Attributes of the modules that only read (kt_weights, numa_placement, numa_sample)."""

from __future__ import annotations


class ModuleDocFragment:
    DOCUMENTATION = r"""
options: {}
attributes:
  check_mode:
    support: full
    description: Only reads, so it runs unchanged in check mode.
  diff_mode:
    support: none
    description: Nothing changes, so there is nothing to diff.
"""
