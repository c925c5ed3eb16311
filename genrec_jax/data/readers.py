"""Readers for the public raw layouts of generative-recommendation datasets.

Each reader reads one layout from a local directory (nothing is downloaded) and returns a
`RawData`: interactions in file order with string ids and float64 seconds, plus the text of
the items that have interactions. Nothing is sorted, deduplicated or filtered here;
preprocessing does that.

Every reader takes `on_bad_line`: 'error' raises `DataError` at the first bad record,
'skip' skips it and counts it in `RawData.dropped[reason]`. Reasons of metadata records
start with 'meta_'. Problems with whole files (missing, empty, mismatched) always raise.
"""

from __future__ import annotations

import ast
import collections
from collections.abc import Callable, Iterator
import contextlib
import dataclasses
import gzip
import html
import importlib.util
import json
import math
import os
import re
from typing import Any, TextIO
import zlib

import numpy as np

from genrec_jax.data import raw

PathLike = str | os.PathLike

_AMAZON2014_ORIGIN = 'https://jmcauley.ucsd.edu/data/amazon/links.html (McAuley et al. 2014)'
_AMAZON2018_ORIGIN = 'https://cseweb.ucsd.edu/~jmcauley/datasets/amazon_v2/ (Ni et al. 2018)'
_AMAZON2023_ORIGIN = 'https://amazon-reviews-2023.github.io/ (Hou et al. 2023)'
_RECBOLE_ORIGIN = 'https://github.com/RUCAIBox/RecSysDatasets (RecBole atomic files)'
_RECBOLE_TYPES = ('token', 'token_seq', 'float', 'float_seq')
_MOVIELENS_FIELDS = {'movie_title': 'title', 'release_year': 'year', 'class': 'genres'}
# Amazon 2018 descriptions and titles carry HTML line breaks and entities.
_BREAK_TAG = re.compile(r'<\s*(?:br|/?p)\s*/?\s*>', re.IGNORECASE)


class _BadRecords:
  """Applies `on_bad_line` to bad records and counts what was dropped."""

  def __init__(self, on_bad_line: str):
    if on_bad_line not in ('error', 'skip'):
      raise raw.DataError(
          f"on_bad_line must be 'error' or 'skip', got {on_bad_line!r}.")
    self._skip = on_bad_line == 'skip'
    self.dropped: collections.Counter[str] = collections.Counter()

  def reject(self, reason: str, message: str) -> None:
    """Raises DataError(message), or counts `reason` when skipping bad records."""
    if not self._skip:
      raise raw.DataError(
          f"{message} Fix or remove the record, or pass on_bad_line='skip' to skip "
          'and count bad records.')
    self.dropped[reason] += 1


class _Interactions:
  """Interaction columns as they are read, in file order."""

  def __init__(self, path: str):
    self.path = path
    self.users: list[str] = []
    self.items: list[str] = []
    self.timestamps: list[float] = []


class _ItemTextCollector:
  """Keeps the text of items that have interactions; counts the meta records it ignores."""

  def __init__(self, interactions: _Interactions, bad: _BadRecords):
    self._interaction_items = set(interactions.items)
    self._dropped = bad.dropped
    self._seen: set[str] = set()
    self._example_meta_item = None
    self.item_text: dict[str, dict[str, str]] = {}

  def add(self, item: str, record: Any, to_text: Callable[[Any], dict[str, str]]) -> None:
    """Adds one meta record; `to_text` only runs for items with interactions (speed)."""
    if item not in self._interaction_items:
      self._example_meta_item = self._example_meta_item or item
      self._dropped['meta_item_without_interactions'] += 1
    elif item in self._seen:
      self._dropped['meta_duplicate_item'] += 1  # The first record of an item wins.
    else:
      self._seen.add(item)
      text = to_text(record)
      if text:
        self.item_text[item] = text
      else:
        self._dropped['meta_item_without_text'] += 1

  def finish(self, meta_path: str, interactions: _Interactions) -> dict[str, dict[str, str]]:
    """Returns the item text; raises if the meta file describes none of the items."""
    if not self._seen:
      meta_example = (f'e.g. {self._example_meta_item!r}' if self._example_meta_item
                      else 'no readable records')
      raise raw.DataError(
          f'{meta_path} shares no item id with {interactions.path} (meta: {meta_example}; '
          f'interactions: e.g. {interactions.items[0]!r}). Use the metadata file of the '
          'same dataset version and category, or remove it.')
    return self.item_text


def read_amazon2014(data_dir: PathLike, category: str, *,
                    on_bad_line: str = 'error') -> raw.RawData:
  """Reads Amazon reviews 2014 (McAuley et al.): 5-core reviews and optional metadata.

  Files: `reviews_{category}_5.json.gz` (JSON lines with reviewerID, asin, unixReviewTime)
  and optional `meta_{category}.json.gz` (Python dict literals). Item text fields: title,
  brand, categories ('A > B, A > C'), description, price.
  """
  bad = _BadRecords(on_bad_line)
  expected = (f'reviews_{category}_5.json.gz and optionally meta_{category}.json.gz, '
              f'from {_AMAZON2014_ORIGIN}')
  data_dir = _require_dir(data_dir, expected)
  reviews_path = _require_file(data_dir, [f'reviews_{category}_5.json.gz'], expected)
  interactions = _read_json_interactions(
      reviews_path, ('reviewerID', 'asin', 'unixReviewTime'), 1.0, bad)
  meta_path = _first_existing(data_dir, [f'meta_{category}.json.gz'])
  return _finish(f'amazon2014/{category}', interactions, meta_path, 'asin',
                 _amazon2014_text, bad)


def read_amazon2018(data_dir: PathLike, category: str, *,
                    on_bad_line: str = 'error') -> raw.RawData:
  """Reads Amazon reviews 2018 (Ni et al.): 5-core reviews or ratings, optional metadata.

  Interactions come from `{category}_5.json.gz` (JSON lines with reviewerID, asin,
  unixReviewTime) or, if absent, the ratings-only `{category}.csv` (no header; columns
  item,user,rating,timestamp). Optional `meta_{category}.json.gz`. Item text fields: title,
  brand, categories ('A > B > C'), description, price (as given, e.g. '$9.99').
  """
  bad = _BadRecords(on_bad_line)
  expected = (f'{category}_5.json.gz (5-core reviews) or {category}.csv (ratings only), '
              f'and optionally meta_{category}.json.gz, from {_AMAZON2018_ORIGIN}')
  data_dir = _require_dir(data_dir, expected)
  interactions_path = _require_file(
      data_dir, [f'{category}_5.json.gz', f'{category}.csv'], expected)
  if interactions_path.endswith('.csv'):
    interactions = _read_ratings_csv(interactions_path, bad)
  else:
    interactions = _read_json_interactions(
        interactions_path, ('reviewerID', 'asin', 'unixReviewTime'), 1.0, bad)
  meta_path = _first_existing(data_dir, [f'meta_{category}.json.gz'])
  return _finish(f'amazon2018/{category}', interactions, meta_path, 'asin',
                 _amazon2018_text, bad)


def read_amazon2023(data_dir: PathLike, category: str, *,
                    on_bad_line: str = 'error') -> raw.RawData:
  """Reads Amazon reviews 2023 (Hou et al.): reviews and optional metadata.

  Files: `{category}.jsonl` or `{category}.jsonl.gz` (user_id, parent_asin, timestamp in
  milliseconds, converted to seconds) and optional `meta_{category}.jsonl(.gz)`. The item
  id is `parent_asin`, not `asin` (variants of one product share it), as in the 2023
  benchmarks. Item text fields: title, brand (from store), categories ('A > B > C'),
  description, price.
  """
  bad = _BadRecords(on_bad_line)
  expected = (f'{category}.jsonl(.gz) and optionally meta_{category}.jsonl(.gz), '
              f'from {_AMAZON2023_ORIGIN}')
  data_dir = _require_dir(data_dir, expected)
  reviews_path = _require_file(
      data_dir, [f'{category}.jsonl', f'{category}.jsonl.gz'], expected)
  interactions = _read_json_interactions(
      reviews_path, ('user_id', 'parent_asin', 'timestamp'), 1000.0, bad)
  meta_path = _first_existing(
      data_dir, [f'meta_{category}.jsonl', f'meta_{category}.jsonl.gz'])
  return _finish(f'amazon2023/{category}', interactions, meta_path, 'parent_asin',
                 _amazon2023_text, bad)


def read_recbole_atomic(data_dir: PathLike, name: str, *,
                        on_bad_line: str = 'error') -> raw.RawData:
  """Reads RecBole atomic files `{name}.inter` and optional `{name}.item`.

  The tab-separated `.inter` needs user_id and item_id columns; without a timestamp
  column, each interaction's time is its 0-based data row index. Item text: every non-id
  column of `.item`, under its field name, as text (token_seq values stay space-separated).
  """
  bad = _BadRecords(on_bad_line)
  expected = f'{name}.inter and optionally {name}.item, from {_RECBOLE_ORIGIN}'
  data_dir = _require_dir(data_dir, expected)
  inter_path = _require_file(data_dir, [f'{name}.inter'], expected)
  interactions = _read_atomic_inter(inter_path, bad)
  item_path = _first_existing(data_dir, [f'{name}.item'])
  item_text = {}
  if item_path:
    item_text = _read_atomic_item(item_path, interactions, bad)
  return _raw_data(name, interactions, item_text, item_path, bad)


def read_movielens100k(data_dir: PathLike | None = None, *,
                       on_bad_line: str = 'error') -> raw.RawData:
  """Reads MovieLens-100k from RecBole's example atomic files `ml-100k.inter/.item`.

  With data_dir=None, uses the copy shipped in the installed recbole package (located
  without importing it). Item text fields: title, year, genres ('Action, Comedy').
  """
  if data_dir is None:
    data_dir = recbole_example_dir('ml-100k')
  data = read_recbole_atomic(data_dir, 'ml-100k', on_bad_line=on_bad_line)
  item_text = {item: _movielens_text(fields) for item, fields in data.item_text.items()}
  return dataclasses.replace(data, item_text=item_text)


def _is_int_id(item) -> bool:
  if isinstance(item, bool):
    return False
  return isinstance(item, int) or (isinstance(item, str) and item.isdigit())


def read_lcrec(data_dir: PathLike, name: str, *, on_bad_line: str = 'error') -> raw.RawData:
  """Reads the LC-Rec / LETTER processed format used across generative recommendation.

  `{name}.inter.json` ({user id: [item ids in time order]}) is required; `{name}.item.json`
  ({item id: {title, description, brand, categories}}) is optional. Ids stay the file's own
  (int ids as strings, which `{name}.index.json` and the .item2id / .user2id maps use too).
  There are no timestamps: an item's position in its user's list is its time.
  """
  data_dir = _require_dir(data_dir, f'{name}.inter.json (+ optional {name}.item.json, '
                          f'{name}.index.json) in the LC-Rec / LETTER processed format')
  path = _require_file(data_dir, [f'{name}.inter.json'], f'{name}.inter.json')
  bad = _BadRecords(on_bad_line)
  sequences = raw.read_json_object(path, '{user: [items in time order]}')
  interactions = _Interactions(path)
  for user, items in sequences.items():
    if not isinstance(items, list):
      bad.reject('malformed_row', f'{path}: user {user!r} maps to {type(items).__name__}, '
                 'not a list of item ids.')
      continue
    if not items:
      bad.dropped['user_without_items'] += 1  # counted, as every dropped record is
      continue
    for position, item in enumerate(items):
      if not _is_int_id(item):
        bad.reject('bad_item_id', f'{path}: user {user!r}, position {position}: item id '
                   f'{json.dumps(item)} is not an integer; LC-Rec ids are ints (or strings '
                   'of digits).')
        continue
      interactions.users.append(str(user))
      interactions.items.append(str(item))
      interactions.timestamps.append(float(position))
  _require_records(interactions, bad)
  item_path = _first_existing(data_dir, [f'{name}.item.json'])
  item_text = {}
  if item_path:
    records = raw.read_json_object(
        item_path, '{item id: {title, description, brand, categories}}')
    known = set(interactions.items)
    for item, fields in records.items():
      if not isinstance(fields, dict):
        bad.reject('malformed_row', f'{item_path}: item {item!r} maps to '
                   f'{type(fields).__name__}, not an object of text fields.')
        continue
      if str(item) not in known:
        bad.dropped['meta_item_without_interactions'] += 1
        continue
      text = _nonempty(title=_text(fields.get('title')), brand=_text(fields.get('brand')),
                       categories=_text(fields.get('categories')),
                       description=_text(fields.get('description')))
      if text:
        item_text[str(item)] = text
    if records and bad.dropped['meta_item_without_interactions'] == len(records):
      raise raw.DataError(f'{item_path} shares no item id with {path}; the two files do not '
                          'belong together.')
  return _raw_data(name, interactions, item_text, item_path, bad)


READERS: dict[str, Callable[..., raw.RawData]] = {
    'amazon2014': read_amazon2014,
    'amazon2018': read_amazon2018,
    'amazon2023': read_amazon2023,
    'recbole': read_recbole_atomic,
    'movielens100k': read_movielens100k,
    'lcrec': read_lcrec,
}


def read(source: str, data_dir: PathLike | None, **kwargs) -> raw.RawData:
  """Reads `data_dir` with the reader of `source` (a key of READERS)."""
  if source not in READERS:
    raise raw.DataError(
        f'Unknown data source {source!r}; valid sources: {", ".join(READERS)}.')
  return READERS[source](data_dir, **kwargs)


# Files and directories.


def _require_dir(data_dir: PathLike, expected: str) -> str:
  """Returns data_dir as an absolute path; raises if it is not a directory."""
  path = os.path.abspath(os.fspath(data_dir))
  if not os.path.isdir(path):
    raise raw.DataError(
        f'{path}: data directory not found. It should hold {expected}; '
        'download them there or point data.dir at the folder that holds them.')
  return path


def _first_existing(data_dir: str, names: list[str]) -> str | None:
  for name in names:
    path = os.path.join(data_dir, name)
    if os.path.isfile(path):
      return path
  return None


def _require_file(data_dir: str, names: list[str], expected: str) -> str:
  """Returns the first of `names` found in data_dir; raises listing what is there."""
  path = _first_existing(data_dir, names)
  if path is None:
    entries = sorted(os.listdir(data_dir))
    listing = ', '.join(entries[:20]) or 'nothing'
    if len(entries) > 20:
      listing += f', ... ({len(entries)} entries)'
    raise raw.DataError(
        f'{os.path.join(data_dir, names[0])}: interactions file not found; '
        f'{data_dir} contains: {listing}. Expected {expected}. '
        'File names are case-sensitive (e.g. Musical_Instruments).')
  return path


@contextlib.contextmanager
def _open_text(path: str) -> Iterator[TextIO]:
  """Opens a UTF-8 text file, gunzipped if it ends in .gz, to be streamed line by line."""
  opener = gzip.open if path.endswith('.gz') else open
  try:
    with opener(path, 'rt', encoding='utf-8-sig') as f:
      yield f
  except UnicodeDecodeError as e:
    raise raw.DataError(
        f'{path}: not UTF-8 text ({e}). Convert it to UTF-8 or re-download it.') from e
  except (gzip.BadGzipFile, EOFError, zlib.error) as e:
    raise raw.DataError(
        f'{path}: damaged or truncated gzip file ({e}). Re-download it.') from e


def recbole_example_dir(name: str) -> str:
  """Finds recbole/dataset_example/{name}; find_spec does not run recbole's code."""
  spec = importlib.util.find_spec('recbole')
  for package_dir in (spec.submodule_search_locations or []) if spec else []:
    path = os.path.join(package_dir, 'dataset_example', name)
    if os.path.isfile(os.path.join(path, f'{name}.inter')):
      return path
  raise raw.DataError(
      f'recbole/dataset_example/{name}/ not found: {name} is read from the example files '
      "of the recbole package. Install them with 'pip install --no-deps recbole==1.2.1' "
      f'(never import recbole), or pass data.dir pointing at a folder with {name}.inter '
      f'and {name}.item.')


# Interactions.


def _parse_record(line: str) -> dict | None:
  """Parses a JSON object, or a Python dict literal (Amazon 2014 meta); None if neither."""
  try:
    record = json.loads(line)
  except ValueError:
    try:
      record = ast.literal_eval(line)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
      return None
  return record if isinstance(record, dict) else None


def _seconds(value: Any, units_per_second: float) -> float | None:
  """Unix time in seconds, or None if `value` is not a finite number."""
  try:
    seconds = float(value) / units_per_second
  except (TypeError, ValueError):
    return None
  return seconds if math.isfinite(seconds) else None


def _malformed(path: str, line_number: int, line: str, what: str) -> str:
  return f'{path}:{line_number}: malformed line, expected {what}: {line[:80]!r}.'


def _read_json_interactions(path: str, keys: tuple[str, str, str],
                            units_per_second: float, bad: _BadRecords) -> _Interactions:
  """Reads (user, item, time) from JSON lines; `keys` names those fields."""
  user_key, item_key, time_key = keys
  interactions = _Interactions(path)
  users, items, timestamps = (
      interactions.users, interactions.items, interactions.timestamps)
  with _open_text(path) as f:
    for line_number, line in enumerate(f, 1):
      record = _parse_record(line)
      if record is None:
        if not line.isspace():
          bad.reject('malformed_json',
                     _malformed(path, line_number, line, 'one JSON object per line'))
        continue
      user, item, time = record.get(user_key), record.get(item_key), record.get(time_key)
      if user is None or item is None or time is None or user == '' or item == '':
        field = next(k for k in keys if record.get(k) in (None, ''))
        bad.reject(f'missing_field:{field}',
                   f'{path}:{line_number}: missing required field {field!r}.')
        continue
      seconds = _seconds(time, units_per_second)
      if seconds is None:
        unit = 'seconds' if units_per_second == 1.0 else 'milliseconds'
        bad.reject(f'bad_timestamp:{time_key}',
                   f'{path}:{line_number}: field {time_key!r} is not a Unix time in '
                   f'{unit}: {time!r}.')
        continue
      users.append(str(user))
      items.append(str(item))
      timestamps.append(seconds)
  _require_records(interactions, bad)
  return interactions


def _read_ratings_csv(path: str, bad: _BadRecords) -> _Interactions:
  """Reads an Amazon 2018 ratings-only CSV: item,user,rating,timestamp, no header."""
  interactions = _Interactions(path)
  with _open_text(path) as f:
    for line_number, line in enumerate(f, 1):
      cells = line.rstrip('\n').split(',')
      if len(cells) != 4:
        if not line.isspace():
          bad.reject('malformed_csv', _malformed(
              path, line_number, line, '4 columns item,user,rating,timestamp (no header)'))
        continue
      item, user, _, time = cells
      if not item or not user:
        field = 'item' if not item else 'user'
        bad.reject(f'missing_field:{field}',
                   f'{path}:{line_number}: empty required column {field!r}.')
        continue
      seconds = _seconds(time, 1.0)
      if seconds is None:
        bad.reject('bad_timestamp:timestamp',
                   f'{path}:{line_number}: column timestamp is not a Unix timestamp: '
                   f'{time!r} (the file has no header row).')
        continue
      interactions.users.append(user)
      interactions.items.append(item)
      interactions.timestamps.append(seconds)
  _require_records(interactions, bad)
  return interactions


def _read_atomic_header(path: str, f: TextIO, required: tuple[str, ...]) -> list[str]:
  """Field names of a RecBole header line 'name:type<TAB>...'; checks `required`."""
  header = f.readline().rstrip('\n')
  if not header:
    raise raw.DataError(
        f'{path}:1: empty header line; a RecBole atomic file starts with a header like '
        "'user_id:token<TAB>item_id:token<TAB>timestamp:float'.")
  names = []
  for cell in header.split('\t'):
    name, _, field_type = cell.partition(':')
    if not name or field_type not in _RECBOLE_TYPES:
      raise raw.DataError(
          f'{path}:1: header cell {cell!r} is not name:type with type in '
          f'{", ".join(_RECBOLE_TYPES)} (header: {header[:200]!r}). The first line of a '
          'RecBole atomic file names its tab-separated columns, e.g. '
          "'user_id:token<TAB>item_id:token<TAB>timestamp:float'.")
    names.append(name)
  missing = [name for name in required if name not in names]
  if missing or len(set(names)) != len(names):
    raise raw.DataError(
        f'{path}:1: header {header[:200]!r} must name each field once and needs '
        f'{" and ".join(f"{r}:token" for r in required)} (missing: {missing or "none"}). '
        'Rename the columns to the RecBole defaults.')
  return names


def _read_atomic_inter(path: str, bad: _BadRecords) -> _Interactions:
  """Reads a RecBole .inter file; without a timestamp column, time = data row index."""
  interactions = _Interactions(path)
  users, items, timestamps = (
      interactions.users, interactions.items, interactions.timestamps)
  with _open_text(path) as f:
    names = _read_atomic_header(path, f, ('user_id', 'item_id'))
    user_col, item_col = names.index('user_id'), names.index('item_id')
    time_col = names.index('timestamp') if 'timestamp' in names else None
    row_index = -1
    for line_number, line in enumerate(f, 2):
      cells = line.rstrip('\n').split('\t')
      if len(cells) != len(names):
        if not line.isspace():
          row_index += 1
          bad.reject('malformed_row', _malformed(
              path, line_number, line, f'{len(names)} tab-separated columns'))
        continue
      row_index += 1
      user, item = cells[user_col], cells[item_col]
      if not user or not item:
        field = 'user_id' if not user else 'item_id'
        bad.reject(f'missing_field:{field}',
                   f'{path}:{line_number}: empty required field {field!r}.')
        continue
      if time_col is None:
        seconds = float(row_index)
      else:
        seconds = _seconds(cells[time_col], 1.0)
        if seconds is None:
          bad.reject('bad_timestamp:timestamp',
                     f'{path}:{line_number}: field timestamp is not a number: '
                     f'{cells[time_col]!r}.')
          continue
      users.append(user)
      items.append(item)
      timestamps.append(seconds)
  _require_records(interactions, bad)
  return interactions


# Item text.


def _read_json_meta(path: str, item_key: str, to_text: Callable[[dict], dict[str, str]],
                    interactions: _Interactions,
                    bad: _BadRecords) -> dict[str, dict[str, str]]:
  """Item text from a JSON-lines (or Python-literal-lines) Amazon metadata file."""
  collector = _ItemTextCollector(interactions, bad)
  with _open_text(path) as f:
    for line_number, line in enumerate(f, 1):
      record = _parse_record(line)
      if record is None:
        if not line.isspace():
          bad.reject('meta_malformed_json', _malformed(
              path, line_number, line, 'one JSON object or Python dict literal per line'))
        continue
      item = record.get(item_key)
      if item is None or item == '':
        bad.reject(f'meta_missing_field:{item_key}',
                   f'{path}:{line_number}: missing required field {item_key!r}.')
        continue
      collector.add(str(item), record, to_text)
  return collector.finish(path, interactions)


def _read_atomic_item(path: str, interactions: _Interactions,
                      bad: _BadRecords) -> dict[str, dict[str, str]]:
  """Item text from a RecBole .item file: every non-id column, under its field name."""
  collector = _ItemTextCollector(interactions, bad)
  with _open_text(path) as f:
    names = _read_atomic_header(path, f, ('item_id',))
    item_col = names.index('item_id')
    text_cols = [(col, name) for col, name in enumerate(names) if col != item_col]

    def to_text(cells: list[str]) -> dict[str, str]:
      texts = ((name, _clean(cells[col])) for col, name in text_cols)
      return {name: text for name, text in texts if text}

    for line_number, line in enumerate(f, 2):
      cells = line.rstrip('\n').split('\t')
      if len(cells) != len(names):
        if not line.isspace():
          bad.reject('meta_malformed_row', _malformed(
              path, line_number, line, f'{len(names)} tab-separated columns'))
        continue
      if not cells[item_col]:
        bad.reject('meta_missing_field:item_id',
                   f'{path}:{line_number}: empty required field item_id.')
        continue
      collector.add(cells[item_col], cells, to_text)
  return collector.finish(path, interactions)


def _clean(text: str) -> str:
  """Plain one-line text: HTML entities and line breaks decoded, whitespace collapsed."""
  if '&' in text:
    text = html.unescape(text)
  if '<' in text:
    text = _BREAK_TAG.sub(' ', text)
  return ' '.join(text.split())


def _text(value: Any) -> str:
  """Text of a metadata value; lists are joined with ', ', empty parts dropped."""
  if value is None:
    return ''
  if isinstance(value, str):
    return _clean(value)
  if isinstance(value, (list, tuple)):
    return _joined(value, ', ')
  if isinstance(value, float) and not math.isfinite(value):
    return ''
  return _clean(str(value))


def _joined(values: Any, separator: str) -> str:
  """Joins the non-empty texts of a list; a non-list value gives its own text."""
  if not isinstance(values, (list, tuple)):
    return _text(values)
  return separator.join(text for text in map(_text, values) if text)


def _category_paths_text(paths: Any) -> str:
  """[['A', 'B'], ['A', 'C']] -> 'A > B, A > C' (Amazon 2014 categories)."""
  if not isinstance(paths, (list, tuple)):
    return _text(paths)
  texts = (_joined(path, ' > ') for path in paths)
  return ', '.join(text for text in texts if text)


def _price_text(value: Any) -> str:
  """Numbers as '12.50'; strings (Amazon 2018 '$12.50') as given; missing as ''."""
  if isinstance(value, (int, float)) and not isinstance(value, bool):
    return f'{value:.2f}' if math.isfinite(value) else ''
  text = _text(value)
  return '' if text.lower() in ('none', 'null', 'nan') else text


def _nonempty(**fields: str) -> dict[str, str]:
  return {name: text for name, text in fields.items() if text}


def _amazon2014_text(record: dict) -> dict[str, str]:
  return _nonempty(
      title=_text(record.get('title')),
      brand=_text(record.get('brand')),
      categories=_category_paths_text(record.get('categories')),
      description=_text(record.get('description')),
      price=_price_text(record.get('price')))


def _amazon2018_text(record: dict) -> dict[str, str]:
  return _nonempty(
      title=_text(record.get('title')),
      brand=_text(record.get('brand')),
      categories=_joined(record.get('category'), ' > '),
      description=_joined(record.get('description'), ' '),
      price=_price_text(record.get('price')))


def _amazon2023_text(record: dict) -> dict[str, str]:
  return _nonempty(
      title=_text(record.get('title')),
      brand=_text(record.get('store')),
      categories=_joined(record.get('categories'), ' > '),
      description=_joined(record.get('description'), ' '),
      price=_price_text(record.get('price')))


def _movielens_text(fields: dict[str, str]) -> dict[str, str]:
  """RecBole ml-100k columns -> title, year, genres ('Animation Children's' -> ', ')."""
  text = {_MOVIELENS_FIELDS.get(name, name): value for name, value in fields.items()}
  if 'genres' in text:
    # Each genre is one token ("Children's", 'Film-Noir', 'Sci-Fi').
    text['genres'] = ', '.join(text['genres'].split())
  return text


# Assembly.


def _finish(name: str, interactions: _Interactions, meta_path: str | None, item_key: str,
            to_text: Callable[[dict], dict[str, str]], bad: _BadRecords) -> raw.RawData:
  """Reads the optional Amazon meta file and builds the RawData."""
  item_text = {}
  if meta_path:
    item_text = _read_json_meta(meta_path, item_key, to_text, interactions, bad)
  return _raw_data(name, interactions, item_text, meta_path, bad)


def _require_records(interactions: _Interactions, bad: _BadRecords) -> None:
  """Raises if an interactions file gave no usable record."""
  if not interactions.users:
    skipped = sum(bad.dropped.values())
    raise raw.DataError(
        f'{interactions.path}: no interactions read ({skipped} bad records skipped: '
        f'{dict(bad.dropped)}). Check that the file is complete and of the expected '
        'layout.')


def _raw_data(name: str, interactions: _Interactions,
              item_text: dict[str, dict[str, str]], meta_path: str | None,
              bad: _BadRecords) -> raw.RawData:
  source_files = (interactions.path,) + ((meta_path,) if meta_path else ())
  return raw.RawData(
      name=name,
      users=np.array(interactions.users, dtype=np.str_),
      items=np.array(interactions.items, dtype=np.str_),
      timestamps=np.array(interactions.timestamps, dtype=np.float64),
      item_text=item_text,
      source_files=source_files,
      dropped=dict(bad.dropped))
