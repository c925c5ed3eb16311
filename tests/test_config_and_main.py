"""Config validation and the end-to-end entry point (smoke runs on synthetic and ml-100k)."""

import glob
import json
import os
import subprocess
import sys

import pytest

from configs import common
from genrec_jax import catalog
from genrec_jax import config as config_lib
from genrec_jax import run
from genrec_jax.data.load import load_dataset

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _synthetic_config(method='pop'):
  config = config_lib.base_config(method, 'synthetic')
  config.data.synthetic.num_users = 150
  config.data.synthetic.num_items = 90
  config.data.kcore = 2
  return config


def test_every_config_file_loads_and_validates():
  shared = ('__init__.py', 'common.py')  # settings the config files import, not configs
  files = sorted(f for f in glob.glob(os.path.join(REPO, 'configs', '*.py'))
                 if os.path.basename(f) not in shared)
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
  config.data.kcore = 3  # a preprocessing change must not reuse the cache ...
  load_dataset(config.data, workdir)
  assert len(glob.glob(os.path.join(workdir, 'data', '*.npz'))) == 2
  with pytest.raises(run.WorkdirError, match=r'data\.kcore=\d+ there, 3 now'):
    run.train_and_evaluate(config, workdir)  # ... and the run must not resume in this workdir


def test_main_pop_on_movielens100k_from_the_command_line(tmp_path):
  env = dict(os.environ, GENREC_TFDS_DIR=str(tmp_path / 'tfds'))
  cmd = [sys.executable, '-m', 'genrec_jax.main', '--config=configs/pop_ml100k.py',
         f'--workdir={tmp_path / "pop"}', '--config.eval.splits=("test",)']
  out = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
  assert out.returncode == 0, out.stderr[-3000:]
  assert 'from 100,000 raw interactions (943 users, 1,682 items)' in out.stdout
  # One headline line at the end (Pop's numbers on the true time order, README); the full
  # tables only in results.md.
  assert out.stdout.strip().splitlines()[-1].startswith(
      'pop_ml-100k (seed 0), test: HR@10 0.0498, NDCG@10 0.0224, tail HR@10 0.0000, MGU@10 ')
  assert '| hr |' not in out.stdout
  assert '| hr |' in (tmp_path / 'pop' / 'results.md').read_text()
  report = subprocess.run([sys.executable, '-m', 'genrec_jax.main', '--mode=report',
                           f'--workdir={tmp_path}'], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=120)
  assert report.returncode == 0 and 'pop_ml-100k' in report.stdout, report.stderr[-2000:]


@pytest.mark.parametrize('variant', common.TABLE_VARIANTS)
def test_tiger_has_no_sinkhorn_level_and_lcrec_rqvae_keeps_its_own(variant):
  """TIGER separates collisions only by its dedup level; LC-Rec's RQ-VAE balances its last
  level with Sinkhorn (epsilon 0.003). tokenize/build.py's _rqvae_codes applies the last
  entry of tokenize.rqvae.sinkhorn_epsilons to the last level (and 0 to the others)."""
  tiger = config_lib.load_config_file(os.path.join(REPO, 'configs', f'tiger_ins.py:{variant}'))
  config_lib.validate(tiger)
  assert tiger.tokenize.method == 'rqvae' and tiger.tokenize.dedup == 'all'
  assert all(e == 0 for e in tiger.tokenize.rqvae.sinkhorn_epsilons)
  lcrec = config_lib.load_config_file(os.path.join(REPO, 'configs', f'lcrec_ins.py:{variant}'))
  lcrec.tokenize.method = 'rqvae'  # LC-Rec's own tokenizer (the table row uses RQK-4)
  config_lib.validate(lcrec)
  assert lcrec.tokenize.rqvae.sinkhorn_epsilons[-1] == pytest.approx(0.003)
  letter = config_lib.load_config_file(os.path.join(REPO, 'configs', f'letter_ins.py:{variant}'))
  if letter.tokenize.method == 'letter':  # LETTER's RQ-VAE on the LC-Rec backbone
    assert letter.tokenize.rqvae.sinkhorn_epsilons[-1] == pytest.approx(0.003)
  # The method default too (base_config('tiger', ...)), while LETTER on TIGER keeps its own.
  assert all(e == 0 for e in config_lib.base_config('tiger', 'synthetic')
             .tokenize.rqvae.sinkhorn_epsilons)
  letter_tiger = config_lib.load_config_file(
      os.path.join(REPO, 'configs', f'letter_ins.py:{variant}_tiger'))
  if letter_tiger.tokenize.method == 'letter':
    assert letter_tiger.tokenize.rqvae.sinkhorn_epsilons[-1] == pytest.approx(0.003)


@pytest.mark.parametrize('variant', ['cpu', 'ins', 'paper', 'smoke'])
def test_ifairlrs_rows_use_the_table_beam_and_popularity_groups(variant):
  """RR re-ranks the table's own beam (decode.beam_size, 20 in every variant) with λ chosen on
  valid from a grid; RW weights the dataset's popularity groups (num_groups 0 = data's)."""
  for mode in ('rw', 'rr'):
    config = config_lib.load_config_file(
        os.path.join(REPO, 'configs', f'ifairlrs_ins.py:{variant}_{mode}'))
    config_lib.validate(config)
    lcrec = config_lib.load_config_file(os.path.join(REPO, 'configs', f'lcrec_ins.py:{variant}'))
    assert config.decode.beam_size == lcrec.decode.beam_size
    assert config.ifairlrs.candidates == 0  # = decode.beam_size
    assert config.ifairlrs.num_groups == 0 and config.data.num_groups == 5
    assert tuple(config.ifairlrs.rr_lambda_grid) == (0.0, 0.1, 0.25, 0.5, 1.0)
    assert config.ifairlrs.rr_select_metric == 'ndcg@10'
  assert config_lib.load_config_file(
      os.path.join(REPO, 'configs', 'lcrec_ins.py:cpu')).decode.beam_size == 20


@pytest.mark.parametrize('field, value, message', [
    ('candidates', 50, 'Invalid config.ifairlrs.candidates'),  # wider than the beam
    ('num_groups', 1, 'Invalid config.ifairlrs.num_groups'),
    ('rr_lambda_grid', (0.0, -0.1), 'Invalid config.ifairlrs.rr_lambda'),
    ('rr_select_metric', 'ndcg@50', 'Invalid config.ifairlrs.rr_select_metric'),
])
def test_invalid_ifairlrs_fields_fail(field, value, message):
  config = config_lib.load_config_file(os.path.join(REPO, 'configs', 'ifairlrs_ins.py:cpu_rr'))
  config.ifairlrs[field] = value
  with pytest.raises(ValueError, match=message.replace('.', r'\.').replace('(', r'\(')):
    config_lib.validate(config)


def test_every_config_declares_its_variants_and_each_loads():
  """--mode=list prints VARIANTS and SUFFIXES: every one of them must be a config that loads
  and validates, and anything else must fail naming them."""
  for name, module in catalog.config_modules().items():
    assert module.VARIANTS and isinstance(module.SUFFIXES, tuple), name
    for variant in module.VARIANTS + tuple(f'{module.VARIANTS[0]}_{s}' for s in module.SUFFIXES):
      config_lib.validate(module.get_config(variant))
    with pytest.raises(ValueError, match=f"unknown variant 'nope'.*{module.VARIANTS[-1]}"):
      module.get_config('nope')


@pytest.mark.parametrize('args, code, expected', [
    (['--config=configs/pop_ml100k.py', '--config.train.learning_rate=1', '--workdir=/tmp/x'], 2,
     'ConfigError: Unknown config key config.train.learning_rate. Did you mean config.train.lr?'),
    (['--config=configs/lcrec_ins.py:cpu_rqk5', '--workdir=/tmp/x'], 2,
     "ConfigError: flag --config=configs/lcrec_ins.py: ValueError: unknown variant 'cpu_rqk5': "
     'variants cpu, ins, paper, smoke; suffixes rqk4, rqk6, prompt, prefix, alltasks'),
])
def test_command_line_config_errors_are_one_line(args, code, expected):
  result = subprocess.run([sys.executable, '-m', 'genrec_jax.main', *args], cwd=REPO,
                          capture_output=True, text=True, timeout=120,
                          env=dict(os.environ, JAX_PLATFORMS='cpu'))
  assert result.returncode == code, result.stderr[-2000:]
  lines = result.stderr.strip().splitlines()
  assert len(lines) == 1 and lines[0].startswith(expected), result.stderr[-2000:]


def test_list_and_show_config():
  listing = catalog.listing()
  for name, module in catalog.config_modules().items():
    assert name in listing and ', '.join(module.VARIANTS) in listing
  assert 'ghost' in listing and 'ml-100k' in listing
  shown = catalog.show(config_lib.load_config_file('configs/ghost_ins.py:cpu_noauo'))
  values = dict(line.split(' = ', 1) for line in shown.splitlines())
  values = {key.strip(): value for key, value in values.items()}
  assert values['ghost.auo'] == 'false' and values['train.lr'] == '0.001'
  assert values['data.name'] == '"ml-100k"' and values['eval.ks'] == '[1, 5, 10, 20]'


def test_a_run_saved_before_a_field_was_renamed_or_added_reads_as_today(tmp_path):
  """An older config.json (model.hf_dir since renamed model.checkpoint; embed.model not yet a
  field) reads back as today's config, so the run still resumes and evaluates."""
  config = config_lib.load_config_file('configs/lcrec_ins.py:cpu_prefix')
  old = json.loads(config.to_json_best_effort())
  old['model']['hf_dir'] = old['model'].pop('checkpoint')
  del old['embed']['model']
  (tmp_path / 'config.json').write_text(json.dumps(old))
  read = run.saved_config(str(tmp_path / 'config.json'))
  assert config_lib.flatten(read) == config_lib.flatten(config)
  run.check_same_config(config, str(tmp_path))  # no "was run with another config"
  config.train.checkpoint_every = 123  # checkpoints hold the data position: no number changes
  run.check_same_config(config, str(tmp_path))
  config.train.lr = 0.5
  with pytest.raises(run.WorkdirError, match='train.lr'):
    run.check_same_config(config, str(tmp_path))


def test_two_old_fields_merged_into_one_read_as_it_unless_they_disagree(tmp_path):
  """embed.run_dir and tokenize.cf_run became embed.cf_run: an empty old field is unset."""
  config = config_lib.load_config_file('configs/letter_ins.py:cpu')
  old = json.loads(config.to_json_best_effort())
  del old['embed']['cf_run']
  old['embed']['run_dir'], old['tokenize']['cf_run'] = '', 'runs/sasrec_old'
  path = tmp_path / 'config.json'
  path.write_text(json.dumps(old))
  assert run.saved_config(str(path)).embed.cf_run == 'runs/sasrec_old'
  old['embed']['run_dir'] = 'runs/other'
  path.write_text(json.dumps(old))
  with pytest.raises(run.WorkdirError, match='disagree'):
    run.saved_config(str(path))
