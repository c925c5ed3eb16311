"""Metrics to `metrics.jsonl` and TensorBoard event files; only process 0 writes."""

from __future__ import annotations

import json
import os
import time

import jax


class MetricWriter:

  def __init__(self, workdir: str, tensorboard: bool = True):
    self.enabled = jax.process_index() == 0
    self._path = os.path.join(workdir, 'metrics.jsonl')
    self._tb = None
    if self.enabled and tensorboard:
      from tensorboardX import SummaryWriter  # pylint: disable=g-import-not-at-top
      self._tb = SummaryWriter(os.path.join(workdir, 'tensorboard'))

  def write(self, step: int, event: str, metrics: dict) -> None:
    """One line {'event', 'step', 'time', **metrics}; scalars also go to TensorBoard."""
    if not self.enabled:
      return
    record = {'event': event, 'step': int(step), 'time': time.time()}
    record.update({k: float(v) for k, v in metrics.items()})
    with open(self._path, 'a') as f:
      f.write(json.dumps(record) + '\n')
    if self._tb is not None:
      for key, value in metrics.items():
        self._tb.add_scalar(f'{event}/{key}', float(value), int(step))
      self._tb.flush()

  def drop_after(self, step: int) -> int:
    """On resume from checkpoint `step`: drops the lines a killed run wrote after it (and
    final results, written again at the end), so no row is duplicated. Returns how many."""
    if not self.enabled or not os.path.exists(self._path):
      return 0
    with open(self._path) as f:
      lines = f.readlines()
    def kept(line):
      try:
        record = json.loads(line)
      except json.JSONDecodeError:  # a line cut by the kill
        return False
      return 0 <= record.get('step', -1) <= step and not record['event'].startswith('final')
    keep = [line for line in lines if kept(line)]
    with open(self._path + '.tmp', 'w') as f:
      f.writelines(keep)
    os.replace(self._path + '.tmp', self._path)
    return len(lines) - len(keep)

  def close(self) -> None:
    if self._tb is not None:
      self._tb.close()
