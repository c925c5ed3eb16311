"""Config validation and the end-to-end entry point (smoke runs on synthetic and ml-100k)."""

import glob
import json
import os
import subprocess
import sys

import pytest

from genrec_jax import config as config_lib
from genrec_jax import run

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _synthetic_config(method='pop'):
  config = config_lib.base_config(method, 'synthetic')
  config.data.synthetic.num_users = 150
  config.data.synthetic.num_items = 90
  config.data.kcore = 2
  return config


def test_every_config_file_loads_and_validates():
  files = sorted(glob.glob(os.path.join(REPO, 'configs', '*.py')))
  assert files
  for path in files:
    config_lib.validate(config_lib.load_config_file(path))


@pytest.mark.parametrize('path, variant', [
    ('lcrec_ins.py', 'paper'), ('lcrec_ins.py', 'cpu_prompt'), ('lcrec_ins.py', 'cpu_alltasks'),
    ('ghost_ins.py', 'paper'), ('ifairlrs_ins.py', 'paper_rw'), ('letter_ins.py', 'paper'),
])
def test_instruction_prompt_variants_validate(path, variant):
  """The `paper` variants (Qwen2.5-3B) train per prefix on LC-Rec's seqrec prompt."""
  config = config_lib.load_config_file(os.path.join(REPO, 'configs', f'{path}:{variant}'))
  config_lib.validate(config)
  assert 'seqrec' in config.instructions.tasks
  assert config.train.example_kind == 'prefix'


@pytest.mark.parametrize('mutate, message', [
    (lambda c: setattr(c.data, 'kcor', 5), 'Unknown config key config.data.kcor. Did you '
     'mean config.data.kcore'),
    (lambda c: c.eval.update(protocol='both'), 'Invalid config.eval.protocol'),
    (lambda c: c.data.update(head_ratio=1.5), 'Invalid config.data.head_ratio'),
    (lambda c: c.data.update(source='amazon2099'), 'Invalid config.data.source'),
    (lambda c: c.update(method='nope'), "config.method: unknown method 'nope'"),
    (lambda c: c.eval.update(ks=(0, 5)), 'Invalid config.eval.ks'),
])
def test_invalid_configs_fail_before_any_work(mutate, message, tmp_path):
  config = _synthetic_config()
  with config.unlocked():
    mutate(config)
  with pytest.raises(ValueError, match=message.replace('.', r'\.').replace('(', r'\(')):
    run.train_and_evaluate(config, str(tmp_path / 'run'))
  assert not os.path.exists(tmp_path / 'run')


def test_run_writes_config_metrics_and_results_and_reuses_cache(tmp_path):
  config = _synthetic_config()
  workdir = str(tmp_path / 'run')
  first = run.train_and_evaluate(config, workdir)
  for name in ('config.json', 'metrics.jsonl', 'results.json', 'results.md'):
    assert os.path.exists(os.path.join(workdir, name)), name
  assert len(glob.glob(os.path.join(workdir, 'data', '*.npz'))) == 1
  with open(os.path.join(workdir, 'results.json')) as f:
    saved = json.load(f)
  assert saved['splits']['test']['hr@10'] == first['splits']['test']['hr@10']
  assert 'past items not masked' in saved['protocol']
  again = run.train_and_evaluate(config, workdir)  # from the cached dataset
  assert again['splits']['test']['hr@10'] == first['splits']['test']['hr@10']
  config.data.kcore = 3  # a preprocessing change must not reuse the cache
  run.train_and_evaluate(config, workdir)
  assert len(glob.glob(os.path.join(workdir, 'data', '*.npz'))) == 2


def test_main_pop_on_movielens100k_from_the_command_line(tmp_path):
  env = dict(os.environ, GENREC_TFDS_DIR=str(tmp_path / 'tfds'))
  cmd = [sys.executable, '-m', 'genrec_jax.main', '--config=configs/pop_ml100k.py',
         f'--workdir={tmp_path / "pop"}', '--config.eval.splits=("test",)']
  out = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
  assert out.returncode == 0, out.stderr[-3000:]
  assert 'from 100,000 raw interactions (943 users, 1,682 items)' in out.stdout
  assert '| hr |' in out.stdout
  report = subprocess.run([sys.executable, '-m', 'genrec_jax.main', '--mode=report',
                           f'--workdir={tmp_path}'], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=120)
  assert report.returncode == 0 and 'pop_ml-100k' in report.stdout, report.stderr[-2000:]
