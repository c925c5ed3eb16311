"""Progress bars of long work: a live bar on a terminal, plain lines in logs.

`bar(...)` takes tqdm's arguments. Its style comes from $GENREC_PROGRESS, which main.py's
--progress sets: 'bar' redraws one line; 'log' prints a plain line at most every 30 s (cluster
logs, where a bar's '\\r' redraws pile up into one long line); 'auto', the default, is 'bar'
when stderr is a terminal and 'log' otherwise. Subprocesses (a sweep's runs) inherit it.
"""

from __future__ import annotations

import os
import re
import sys

import tqdm

ENV = 'GENREC_PROGRESS'
STYLES = ('auto', 'bar', 'log')
_CURSOR_MOVES = re.compile(r'\x1b\[[0-9;]*[A-Za-z]')


def bar(*args, **kwargs) -> tqdm.tqdm:
  style = os.environ.get(ENV, 'auto')
  if style not in STYLES:
    raise ValueError(f'${ENV}={style!r}: use one of {STYLES}.')
  if style == 'auto':
    style = 'bar' if sys.stderr.isatty() else 'log'
  if style == 'log':  # nothing for work done within 30 s, then a line every 30 s
    kwargs.update(file=_Lines(sys.stderr), mininterval=30.0, delay=30.0, ascii=True,
                  ncols=100, dynamic_ncols=False)
  else:
    kwargs.setdefault('dynamic_ncols', True)
  return tqdm.tqdm(*args, **kwargs)


class _Lines:
  """A file for tqdm that turns each redraw into its own line."""

  def __init__(self, stream):
    self.stream = stream

  def write(self, text: str) -> None:
    text = _CURSOR_MOVES.sub('', text).strip('\r\n')  # nested bars move the cursor
    if text.strip():
      self.stream.write(text + '\n')

  def flush(self) -> None:
    self.stream.flush()
