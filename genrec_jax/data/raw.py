"""What every raw-data reader returns: interactions and item text before any filtering.

A reader turns one public file layout (Amazon 2014/2018/2023, RecBole atomic files, the
synthetic generator) into a `RawData`. Readers keep every usable record, in file order, and
count what they had to drop (with the reason) in `dropped`; preprocessing does the rest.
"""

from __future__ import annotations

import dataclasses
import json

import numpy as np


class DataError(ValueError):
  """Bad input data. The message names the file, the line or field, and the fix."""


def read_json_object(path: str, expected: str) -> dict:
  """A JSON side file that must hold one object, or a DataError naming the file."""
  try:
    with open(path, encoding='utf-8') as f:
      value = json.load(f)
  except FileNotFoundError:
    raise DataError(f'{path}: not found; expected {expected}.') from None
  except (json.JSONDecodeError, UnicodeDecodeError) as e:
    raise DataError(f'{path}: not valid JSON ({e}); expected {expected}.') from None
  if not isinstance(value, dict):
    raise DataError(f'{path}: holds a JSON {type(value).__name__}; expected {expected}.')
  return value


@dataclasses.dataclass(frozen=True)
class RawData:
  """Interactions in raw file order, with raw (string) ids.

  Attributes:
    name: dataset name, e.g. 'ml-100k' or 'amazon2018/Musical_Instruments'.
    users: [N] str, raw user id of each interaction.
    items: [N] str, raw item id of each interaction.
    timestamps: [N] float64 seconds. Sources without time use the position in the file,
      which is their time order.
    item_text: raw item id -> {field: text}. Fields are plain strings (lists are joined
      with ', ', category paths with ' > '); items without metadata are absent.
    source_files: the files read, for error messages and the cache fingerprint.
    dropped: reason -> number of records skipped while reading (never silently).
  """

  name: str
  users: np.ndarray
  items: np.ndarray
  timestamps: np.ndarray
  item_text: dict[str, dict[str, str]]
  source_files: tuple[str, ...]
  dropped: dict[str, int] = dataclasses.field(default_factory=dict)

  def __post_init__(self):
    n = len(self.users)
    if not (len(self.items) == len(self.timestamps) == n):
      raise DataError(
          f'{self.name}: users/items/timestamps lengths differ '
          f'({n}, {len(self.items)}, {len(self.timestamps)}) in {self.source_files}; '
          'the reader must emit one entry of each per interaction.')
