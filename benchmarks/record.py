"""How the benchmarks record a run: the machine it ran on, and its entry in RESULTS.md."""

from __future__ import annotations

import datetime
import os
import platform
import shlex
import sys


def cpu_model() -> str:
  """The CPU's model name from /proc/cpuinfo (platform.processor() where that is missing)."""
  try:
    with open('/proc/cpuinfo') as f:
      return next(line.split(':', 1)[1].strip() for line in f
                  if line.startswith('model name'))
  except (OSError, StopIteration):
    return platform.processor() or 'unknown'


def load_str() -> str:
  """The 1/5/15-minute load averages, e.g. '1.02/0.98/0.95' (other jobs skew timings)."""
  return '/'.join(f'{x:.2f}' for x in os.getloadavg())


def header(machine: str | None = None, *notes: str) -> list[str]:
  """The lines an entry opens with: UTC date, machine (by default nproc, CPU, jax and load),
  the command as typed, then any `notes` lines."""
  if machine is None:
    import jax  # pylint: disable=g-import-not-at-top
    machine = (f'nproc {os.cpu_count()}, CPU {cpu_model()}, jax {jax.__version__}, '
               f'load {load_str()}')
  script = f'benchmarks/{os.path.basename(sys.argv[0])}'
  return [f'- date: {datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}',
          f'- machine: {machine}',
          f'- command: `{shlex.join(["python", script, *sys.argv[1:]])}`',
          *(f'- {note}' for note in notes)]


def publish(report: str, path: str, heading: str, no_record: bool) -> None:
  """Prints a benchmark's report and, unless `no_record`, adds it to RESULTS.md."""
  print('\n' + report)
  if not no_record:
    add_entry(path, heading, report)
    print(f'appended to {path}')


def add_entry(path: str, heading: str, entry: str) -> None:
  """Adds `entry` at the end of the `## heading` section of RESULTS.md (one section per
  benchmark, runs in date order), creating the section or the file when missing."""
  text = open(path).read() if os.path.exists(path) else '# Benchmark results\n'
  lines = text.rstrip('\n').split('\n')
  title = f'## {heading}'
  if title in lines:
    start = lines.index(title)
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith('## ')),
               len(lines))
    last = end
    while lines[last - 1] == '':  # the section's own text ends here
      last -= 1
    lines[last:end] = ['', entry.strip('\n')] + ([''] if end < len(lines) else [])
  else:
    lines += ['', title, '', entry.strip('\n')]
  tmp = f'{path}.tmp'
  with open(tmp, 'w') as f:
    f.write('\n'.join(lines).rstrip('\n') + '\n')
  os.replace(tmp, path)
