"""Shared by every test file: under pytest-xdist each worker builds its own TFDS cache, so
two workers never write the same dataset directory at once."""

import os

_WORKER = os.environ.get('PYTEST_XDIST_WORKER')
if _WORKER:
  _BASE = os.environ.get('GENREC_TFDS_DIR') or os.path.expanduser('~/tensorflow_datasets')
  os.environ['GENREC_TFDS_DIR'] = os.path.join(_BASE, f'xdist_{_WORKER}')
