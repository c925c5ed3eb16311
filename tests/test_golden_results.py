"""Golden results: every config file's `smoke` variant gives the numbers recorded before the
method seam was redesigned (issue 18), so a refactor that changes any number fails here.

The golden file holds each run's valid and test metrics (timings left out) and the machine
they were recorded on. XLA:CPU compiles for the host's instruction set, so on a CPU of
another model the last bits of training can differ and a rank can flip: there the numbers
must agree to `CROSS_MACHINE_ATOL`; on the recording CPU model they must be identical.

Record again (only when a change of numbers is intended, and say why in the commit):
  .venv/bin/python tests/test_golden_results.py
"""

import json
import math
import os
import platform
import sys

import jax
import pytest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from genrec_jax import config as config_lib  # pylint: disable=g-import-not-at-top
from genrec_jax import run  # pylint: disable=g-import-not-at-top

GOLDEN = os.path.join(os.path.dirname(__file__), 'fixtures', 'golden_results.json')
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CROSS_MACHINE_ATOL = 0.02  # a few of ~400 synthetic users' ranks

# (run name, config spec, overrides). Every config file's smoke variants; LETTER reads the
# SASRec smoke run's item vectors, so SASRec comes first. pop_ml100k has no smoke variant:
# Pop on MovieLens-100k is deterministic and takes seconds.
RUNS = [
    ('sasrec', 'configs/sasrec_ins.py:smoke', {}),
    ('letter', 'configs/letter_ins.py:smoke', {'embed.cf_run': '<sasrec>'}),
    ('letter_tiger', 'configs/letter_ins.py:smoke_tiger', {'embed.cf_run': '<sasrec>'}),
    ('pop_ins', 'configs/pop_ins.py:smoke', {}),
    ('pop_ml100k', 'configs/pop_ml100k.py:cpu', {}),
    ('lcrec', 'configs/lcrec_ins.py:smoke', {}),
    ('lcrec_rqk4_prefix', 'configs/lcrec_ins.py:smoke_rqk4_prefix', {}),
    ('lcrec_prompt', 'configs/lcrec_ins.py:smoke_prompt', {}),
    ('lcrec_alltasks', 'configs/lcrec_ins.py:smoke_alltasks', {}),
    ('tiger', 'configs/tiger_ins.py:smoke', {}),
    ('ghost', 'configs/ghost_ins.py:smoke', {}),
    ('ghost_prefix', 'configs/ghost_ins.py:smoke', {'train.example_kind': 'prefix'}),
    ('ghost_noauo', 'configs/ghost_ins.py:smoke_noauo', {}),
    ('ghost_rqk46', 'configs/ghost_ins.py:smoke_rqk46', {}),
    ('ifairlrs_rw', 'configs/ifairlrs_ins.py:smoke_rw', {}),
    ('ifairlrs_rr', 'configs/ifairlrs_ins.py:smoke_rr', {}),
    ('augment', 'configs/augment_ins.py:smoke_augment', {}),
    ('substitute', 'configs/augment_ins.py:smoke_substitute', {}),
]


def machine() -> dict:
  model = platform.processor()
  if os.path.exists('/proc/cpuinfo'):
    with open('/proc/cpuinfo') as f:
      model = next((line.split(':', 1)[1].strip() for line in f
                    if line.startswith('model name')), model)
  return {'cpu': model, 'jax': jax.__version__}


def smoke_run(name: str, spec: str, overrides: dict, root: str) -> dict:
  """{split: metrics without timings} of one smoke run in root/name."""
  config = config_lib.load_config_file(os.path.join(ROOT, spec))
  for key, value in overrides.items():
    if value == '<sasrec>':
      value = os.path.join(root, 'sasrec')
    config_lib.set_field(config, key, value)
  config.data.tfds_dir = os.path.join(root, 'tfds')
  results = run.train_and_evaluate(config, os.path.join(root, name))
  return {split: {k: v for k, v in metrics.items() if 'seconds' not in k}
          for split, metrics in results['splits'].items()}


def _assert_matches(got: dict, want: dict, atol: float, name: str):
  assert set(got) == set(want), name
  for split in want:
    assert set(got[split]) == set(want[split]), (name, split)
    for key, value in want[split].items():
      if atol == 0:
        assert got[split][key] == value, (name, split, key, got[split][key], value)
      else:
        assert math.isclose(got[split][key], value, rel_tol=atol, abs_tol=atol), (
            name, split, key, got[split][key], value)


@pytest.fixture(scope='module')
def golden():
  with open(GOLDEN) as f:
    return json.load(f)


@pytest.fixture(scope='module')
def root(tmp_path_factory):
  return str(tmp_path_factory.mktemp('golden'))


# Left out of the default suite for its time: their parts run in the default one on their own
# (LETTER's SIDs and TIGER's backbone in 'letter' and 'tiger'; the four instruction tasks in
# tests/test_instructions.py). `pytest -m slow tests` checks them.
SLOW = ('letter_tiger', 'lcrec_alltasks')


@pytest.mark.parametrize('name, spec, overrides', [
    pytest.param(*run, marks=pytest.mark.slow) if run[0] in SLOW else run for run in RUNS],
    ids=[r[0] for r in RUNS])
def test_smoke_results_match_the_golden_record(name, spec, overrides, golden, root):
  if overrides.get('embed.cf_run') == '<sasrec>' and not os.path.isdir(
      os.path.join(root, 'sasrec')):
    smoke_run(*RUNS[0], root)
  got = smoke_run(name, spec, overrides, root)
  same_cpu = golden['machine']['cpu'] == machine()['cpu']
  _assert_matches(got, golden['runs'][name], 0 if same_cpu else CROSS_MACHINE_ATOL, name)


if __name__ == '__main__':
  import tempfile  # pylint: disable=g-import-not-at-top
  with tempfile.TemporaryDirectory() as tmp:
    record = {'machine': machine(), 'runs': {}}
    for run_spec in RUNS:
      record['runs'][run_spec[0]] = smoke_run(*run_spec, tmp)
  with open(GOLDEN, 'w') as f:
    json.dump(record, f, indent=1, sort_keys=True)
  print(f'wrote {GOLDEN}: {len(record["runs"])} runs on {record["machine"]}')
