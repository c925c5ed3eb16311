r"""Training throughput of one run at a time against `launch.sweep --jobs=N` (N runs side by
side, each pinned to its own share of the CPUs).

  python benchmarks/side_by_side_benchmark.py                  # ~10 min, appends RESULTS.md
  python benchmarks/side_by_side_benchmark.py --no_record --seconds=60 --warmup=30

Runs the `cpu` LC-Rec (per prefix) config on MovieLens-100k as the sweep launches it (its
malloc settings, its CPU shares): first alone on every CPU, then `--jobs` copies at once. Each
run trains for `--seconds`; its optimizer steps per second are read from its metrics.jsonl
after `--warmup` seconds (compilation and the first steps left out). The data and SIDs are
made once and copied to every run's workdir, so all runs train the same model on the same
data.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchmarks import record  # pylint: disable=g-import-not-at-top,wrong-import-position
from launch import sweep  # pylint: disable=g-import-not-at-top,wrong-import-position

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG = 'configs/lcrec_ins.py:cpu_prefix'


def _command(workdir: str) -> list[str]:
  return [sys.executable, '-m', 'genrec_jax.main', f'--config={CONFIG}', f'--workdir={workdir}',
          '--config.train.log_every=20']


def _train_events(workdir: str) -> list[dict]:
  path = os.path.join(workdir, 'metrics.jsonl')
  if not os.path.exists(path):
    return []
  with open(path) as f:
    return [e for e in map(json.loads, f) if e['event'] == 'train']


def _prepare(cache: str) -> None:
  """Makes the data and SIDs once (a run stopped at its first logged step)."""
  if os.path.isdir(os.path.join(cache, 'sids')):
    return
  process = subprocess.Popen(_command(cache), cwd=REPO, stdout=subprocess.DEVNULL,  # pylint: disable=consider-using-with
                             stderr=subprocess.STDOUT, env={**sweep.MALLOC_ENV, **os.environ})
  while not _train_events(cache):
    if process.poll() is not None:
      raise SystemExit(f'{cache}: the preparing run exited with {process.returncode}')
    time.sleep(2)
  process.send_signal(signal.SIGTERM)
  process.wait()


def _fresh_workdir(cache: str, workdir: str) -> str:
  shutil.rmtree(workdir, ignore_errors=True)
  os.makedirs(workdir)
  for name in ('config.json', 'data', 'sids'):
    source = os.path.join(cache, name)
    (shutil.copytree if os.path.isdir(source) else shutil.copyfile)(
        source, os.path.join(workdir, name))
  return workdir


def measure(cache: str, jobs: int, seconds: float, warmup: float) -> list[float]:
  """Steps per second of each of `jobs` runs trained side by side, as `--jobs` places them."""
  shares = sweep.cpu_shares(jobs)
  workdirs = [_fresh_workdir(cache, f'{cache}_jobs{jobs}_{k}') for k in range(jobs)]
  processes = []
  for workdir, cpus in zip(workdirs, shares):
    processes.append(subprocess.Popen(  # pylint: disable=consider-using-with
        sweep.pinned(_command(workdir), cpus), cwd=REPO, stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT, env={**sweep.MALLOC_ENV, **os.environ}))
  start = time.time()
  time.sleep(seconds)
  for process in processes:
    process.send_signal(signal.SIGTERM)
  for process in processes:
    process.wait()
  rates = []
  for workdir in workdirs:
    events = [e for e in _train_events(workdir) if e['time'] >= start + warmup]
    if len(events) < 2:
      raise SystemExit(f'{workdir}: fewer than 2 steps logged after the warm-up; '
                       'raise --seconds')
    rates.append((events[-1]['step'] - events[0]['step']) / (events[-1]['time'] - events[0]['time']))
  return rates


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--jobs', type=int, default=len(os.sched_getaffinity(0)))
  parser.add_argument('--seconds', type=float, default=240)
  parser.add_argument('--warmup', type=float, default=60)
  parser.add_argument('--workdir', default='/tmp/side_by_side')
  parser.add_argument('--no_record', action='store_true')
  args = parser.parse_args()
  _prepare(args.workdir)
  load_before = record.load_str()
  alone = measure(args.workdir, 1, args.seconds, args.warmup)
  side_by_side = measure(args.workdir, args.jobs, args.seconds, args.warmup)
  lines = record.header(
      f'nproc {os.cpu_count()}, CPU {record.cpu_model()}',
      f'load average before / after: {load_before} / {record.load_str()}',
      f'{CONFIG}, steps of 32 examples') + [
      '',
      '| runs at a time | CPUs per run | steps/s of each run | steps/s in all | vs one at a time |',
      '|---|---|---|---|---|']
  for rates, jobs in ((alone, 1), (side_by_side, args.jobs)):
    cpus = len(os.sched_getaffinity(0)) // jobs
    lines.append(f'| {jobs} | {cpus} | {", ".join(f"{r:.2f}" for r in rates)} | '
                 f'{sum(rates):.2f} | {sum(rates) / sum(alone):.2f}x |')
  record.publish('\n'.join(lines), os.path.join(REPO, 'benchmarks', 'RESULTS.md'),
                 'Sweeps: runs side by side (launch.sweep --jobs)', args.no_record)


if __name__ == '__main__':
  main()
