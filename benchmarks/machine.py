"""What the benchmarks record about the machine they ran on."""

from __future__ import annotations

import platform


def cpu_model() -> str:
  """The CPU's model name from /proc/cpuinfo (platform.processor() where that is missing)."""
  try:
    with open('/proc/cpuinfo') as f:
      return next(line.split(':', 1)[1].strip() for line in f
                  if line.startswith('model name'))
  except (OSError, StopIteration):
    return platform.processor() or 'unknown'
