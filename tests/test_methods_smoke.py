"""Every method trains and evaluates end to end from its config on synthetic data, in
seconds, and an eval-only run from the saved checkpoint reproduces its test metrics."""

import math
import os
import runpy
import sys
from unittest import mock

import numpy as np
import pytest

from experiments import rr_tradeoff
from experiments import tail_diagnosis
from genrec_jax import config as config_lib
from genrec_jax import methods
from genrec_jax import run
from genrec_jax.data import synthetic
from genrec_jax.data.load import load_dataset
from genrec_jax.methods import ghost

NUM_USERS, NUM_ITEMS = 120, 60


def _config(method, embeddings_path, **method_defaults):
  defaults = (methods.get(method).default_config(**method_defaults) if method_defaults
              else None)
  config = config_lib.base_config(method, 'synthetic', defaults)
  config.data.synthetic.update(num_users=NUM_USERS, num_items=NUM_ITEMS)
  config.data.kcore = 2
  config.eval.splits = ('test',)
  config.embed.update(source='npy', npy_path=embeddings_path)
  config.train.update(batch_size=16, num_steps=6, log_every=3, eval_every=6, warmup_steps=1)
  if 'model' in config and 'hidden_size' in config.model:
    config.model.update(hidden_size=32, intermediate_size=64, num_layers=1, num_heads=2,
                        num_kv_heads=1)
  if 'model' in config and 'd_model' in config.model:
    config.model.update(d_model=32, num_heads=2, head_dim=16, d_ff=64, num_encoder_layers=1,
                        num_decoder_layers=1)
  if methods.spec(method).family == 'generative':
    config.eval.ks = (1, 5, 10)
    config.decode.beam_size = 10
  config.tokenize.update(codes_per_level=6, levels=3, head_levels=2, tail_levels=2,
                         pca_dim=8)
  config.tokenize.rqvae.update(epochs=3, hidden_sizes=(16,), latent_dim=8, batch_size=64)
  return config


@pytest.fixture(scope='module')
def embeddings_path(tmp_path_factory):
  """Topic one-hots plus noise: item embeddings with the generator's real structure."""
  _, truth = synthetic.generate_with_truth(num_users=NUM_USERS, num_items=NUM_ITEMS)
  config = config_lib.base_config('pop', 'synthetic')
  config.data.synthetic.update(num_users=NUM_USERS, num_items=NUM_ITEMS)
  config.data.kcore = 2
  ds = load_dataset(config.data)
  index = np.array([int(i[1:]) for i in ds.item_ids])  # 'i0042' -> 42
  rng = np.random.default_rng(0)
  topics = truth['item_topic'][index]
  vectors = np.eye(topics.max() + 1)[topics] + 0.3 * rng.normal(size=(len(index),
                                                                       topics.max() + 1))
  path = str(tmp_path_factory.mktemp('emb') / 'items.npy')
  np.save(path, vectors.astype(np.float32))
  return path


def _check(results):
  test = results['splits']['test']
  for key in ('hr@10', 'ndcg@10', 'hr@10/tail', 'mgu@10', 'arp@10'):
    assert math.isfinite(test[key]), key
  assert test['empty_slots@10'] == 0  # the trie never returns fewer items than asked


# Every config file's smoke variant (prefix training, prompts, RW, augmentation, RQK-4-6...)
# is kept to its exact numbers by test_golden_results.py; these rows add what it cannot see:
# the eval-only reload, the RR choice of λ and Ghost's AUO on the encoder-decoder.
@pytest.mark.parametrize('method, overrides, reload', [
    ('lcrec', {}, True),
    ('tiger', {}, True),
    ('ghost', {}, True),
    ('ghost', {'backbone': 'tiger'}, False),  # AUO on the encoder-decoder
    ('ifairlrs', {'ifairlrs.mode': 'rr', 'eval.splits': ('valid', 'test')}, False),
])
def test_method_trains_evaluates_and_reloads(method, overrides, reload, embeddings_path,
                                             tmp_path):
  backbone = {k: v for k, v in overrides.items() if k == 'backbone'}  # default_config(backbone)
  config = _config(method, embeddings_path, **backbone)
  for key, value in ((k, v) for k, v in overrides.items() if '.' in k):
    section, field = key.split('.')
    config[section][field] = value
  workdir = str(tmp_path / method)
  results = run.train_and_evaluate(config, workdir)
  _check(results)
  if overrides.get('ifairlrs.mode') == 'rr':  # λ chosen on valid, recorded, used for valid
    chosen = results['ifairlrs_rr']
    assert chosen['rr_lambda'] in config.ifairlrs.rr_lambda_grid
    assert chosen['valid_by_lambda'][str(chosen['rr_lambda'])] == max(
        chosen['valid_by_lambda'].values())
    assert results['splits']['valid']['ndcg@10'] == pytest.approx(
        chosen['valid_by_lambda'][str(chosen['rr_lambda'])])
  if not reload:  # the eval-only path is the same for every generative method
    return
  with open(os.path.join(workdir, 'results.json')) as f:
    original = f.read()
  again = run.train_and_evaluate(config, workdir, eval_only=True)
  assert again['splits']['test']['hr@10'] == results['splits']['test']['hr@10']
  assert again['splits']['test']['ndcg@10'] == results['splits']['test']['ndcg@10']
  assert again['name'] == f'{config.name} [re-evaluated]'
  assert os.path.exists(os.path.join(workdir, 'eval', 'results.json'))
  if method == 'lcrec':  # an ablation from the checkpoint: another beam, its own folder
    wider = config.copy_and_resolve_references()
    wider.decode.beam_size = 20
    wider.eval.splits = ('valid', 'test')
    out = os.path.join(workdir, 'ablations', 'beam20')
    ablation = run.train_and_evaluate(wider, workdir, eval_only=True, out=out)
    assert ablation['name'] == (f"{config.name} [decode.beam_size=20, "
                                f"eval.splits=['valid', 'test']]")
    assert ablation['evaluated']['changed'] == {'decode.beam_size': 20,
                                                'eval.splits': ['valid', 'test']}
    assert ablation['evaluated']['checkpoint_step'] == 6
    _, dataset, fresh, params = run.load_run(workdir, config=wider)  # a fresh evaluation
    timeless = lambda m: {k: v for k, v in m.items() if k != 'eval_seconds'}
    for split in ('valid', 'test'):  # valid too: not the validation saved in training
      expected = run.evaluate(fresh, params, dataset, split, wider.eval, wider.seed)
      assert timeless(ablation['splits'][split]) == timeless(expected)
    with pytest.raises(run.WorkdirError, match='never writes into the trained run'):
      run.train_and_evaluate(wider, workdir, eval_only=True, out=workdir)
    _check_rr_tradeoff(workdir, results['splits']['test'])
    _check_default_distractors(workdir)
  with open(os.path.join(workdir, 'results.json')) as f:
    assert f.read() == original  # evaluations never overwrite the trained run's results
  if method == 'ghost':
    _check_tail_diagnosis(workdir, results['splits']['test'])
    _check_mined_distractors(workdir, config, tmp_path)


def _check_rr_tradeoff(workdir, test):
  """experiments/rr_tradeoff.py re-ranks the run's beam: λ = 0 is the run's own ranking, and a
  huge λ orders the beam's 10 items least popular first (top-5 ARP can only fall)."""
  curves = rr_tradeoff.tradeoff(workdir, [0.0, 1e3], splits=('test',))['test']
  assert {k: v for k, v in curves[0.0].items() if k in test} == {
      k: v for k, v in test.items() if k != 'eval_seconds'}
  assert curves[1e3]['arp@5'] <= curves[0.0]['arp@5']
  assert curves[1e3]['arp@10'] == pytest.approx(curves[0.0]['arp@10'])  # the same 10 items
  out = os.path.join(workdir, 'ablations', 'rr')
  text = rr_tradeoff.report({'test': curves}, workdir, out)
  assert '| 1000 |' in text and os.path.getsize(out + '.png') > 1000


def _check_tail_diagnosis(workdir, test):
  """experiments/tail_diagnosis.py rebuilds the run from its config.json: its beam hits are
  the run's HR@10, and a hit's teacher-forced log P clears the 10th beam score."""
  loaded = run.load_run(workdir)
  rows = tail_diagnosis.target_log_probs(loaded)
  is_tail = ~loaded.dataset.is_head[loaded.dataset.split_targets('test')[0]]
  assert rows['hit'].mean() == pytest.approx(test['hr@10'])
  assert rows['hit'][is_tail].mean() == pytest.approx(test['hr@10/tail'])
  total = np.nansum(rows['log_p'], axis=1)
  assert np.all(total[rows['hit']] >= rows['bar'][rows['hit']] - 1e-4)
  assert np.all(np.isfinite(rows['log_p'][:, 0]))  # every SID has a first token
  text = tail_diagnosis.report(workdir)
  assert 'tail-only nodes' in text and 'AUO distractors' in text


def _check_default_distractors(workdir):
  """A run without AUO: tail_diagnosis picks the distractors Ghost's defaults would, from the
  workdir's cached item vectors and the run's SIDs: head items for every tail item, the same
  as from the SIDs the tokenize stage builds."""
  loaded = run.load_run(workdir)
  distractors = tail_diagnosis.distractors_of(loaded, workdir)
  is_head, defaults = loaded.dataset.is_head, ghost.default_config().ghost
  assert distractors.shape == (len(is_head), defaults.k_b)
  assert np.all(is_head[distractors[~is_head]])
  embeddings, sids = run.item_sids(loaded.config, loaded.dataset, workdir)
  expected = ghost.undesired_collection(embeddings, sids.item_tokens(), is_head, defaults.k_a,
                                        defaults.k_b)
  np.testing.assert_array_equal(distractors[~is_head], expected[~is_head])


def _check_mined_distractors(workdir, config, tmp_path):
  """Distractors mined from the trained run: head items for tail rows only, a file written by
  experiments/mine_distractors.py equal to run.mine_distractors, and a Ghost given the run
  (ghost.distractors_run) mines them once into its workdir and uses them first."""
  mined, summary = run.mine_distractors(workdir, config.ghost.k_b)
  dataset = run.load_run(workdir).dataset
  assert mined.shape == (dataset.num_items, config.ghost.k_b)
  assert (mined[dataset.is_head] == -1).all() and dataset.is_head[mined[mined >= 0]].all()
  assert summary['tail_examples'] == int((~dataset.is_head[dataset.seq_items[
      dataset.train_examples()[1]]]).sum())
  script = os.path.join(os.path.dirname(__file__), '..', 'experiments', 'mine_distractors.py')
  argv = [script, f'--run={workdir}', f'--k_b={config.ghost.k_b}',
          f'--out={tmp_path / "mined.npy"}']
  with mock.patch.object(sys, 'argv', argv):
    runpy.run_path(script, run_name='__main__')
  np.testing.assert_array_equal(np.load(tmp_path / 'mined.npy'), mined)
  with_run = config.copy_and_resolve_references()
  with_run.ghost.distractors_run = workdir
  ghost_workdir = str(tmp_path / 'ghost_mined')
  built = run.build_method(with_run, dataset, ghost_workdir)
  np.testing.assert_array_equal(np.load(os.path.join(ghost_workdir, 'distractors', 'mined.npy')),
                                mined)
  used = np.asarray(built.branch_items)
  for v in np.flatnonzero(~dataset.is_head):
    first = list(dict.fromkeys(mined[v][mined[v] >= 0]))
    assert list(used[v][:len(first)]) == first


@pytest.mark.parametrize('backbone', ['lcrec', 'tiger'])
def test_letter_with_sasrec_collaborative_embeddings(backbone, embeddings_path, tmp_path):
  sasrec = _config('sasrec', embeddings_path)
  sasrec.model.update(hidden=8, num_layers=1)
  sasrec_dir = str(tmp_path / 'sasrec')
  run.train_and_evaluate(sasrec, sasrec_dir)
  config = _config('letter', embeddings_path, backbone=backbone)
  config.embed.cf_run = sasrec_dir
  results = run.train_and_evaluate(config, str(tmp_path / 'letter'))
  _check(results)
  assert os.listdir(tmp_path / 'letter' / 'sids')


def test_lcrec_fine_tunes_a_hugging_face_checkpoint_with_frozen_backbone(embeddings_path,
                                                                          tmp_path):
  """LC-Rec on a tiny Qwen2 checkpoint in the HF layout: SID rows are added after the text
  vocabulary and train; with train_backbone=False the rest stays bit-identical."""
  import jax  # pylint: disable=g-import-not-at-top
  from genrec_jax.models import hf_loading  # pylint: disable=g-import-not-at-top
  import test_decoder  # pylint: disable=g-import-not-at-top
  hf_dir = tmp_path / 'qwen2'
  hf_dir.mkdir()
  test_decoder._write_checkpoint(str(hf_dir), 'qwen2')  # pylint: disable=protected-access
  config = _config('lcrec', embeddings_path)
  config.model.update(checkpoint=str(hf_dir), train_backbone=False, train_old_vocab=False)
  workdir = str(tmp_path / 'run')
  _check(run.train_and_evaluate(config, workdir))
  finished = run.load_run(workdir)
  before = finished.method.init(None)
  after = finished.params
  base = hf_loading.load_checkpoint(str(hf_dir), load_tokenizer=False).config.vocab_size
  for path, old in jax.tree_util.tree_flatten_with_path(before)[0]:
    new = jax.tree_util.tree_flatten_with_path(after)[0]
    new = dict((jax.tree_util.keystr(p), v) for p, v in new)[jax.tree_util.keystr(path)]
    old, new = np.asarray(old), np.asarray(new)
    if 'embedding' in jax.tree_util.keystr(path):
      np.testing.assert_array_equal(old[:base], new[:base])  # text vocabulary frozen
      assert not np.array_equal(old[base:], new[base:])  # SID rows trained
    else:
      np.testing.assert_array_equal(old, new)


def test_final_validation_reuses_the_saved_metrics_of_the_best_params(embeddings_path,
                                                                      tmp_path, monkeypatch):
  config = _config('lcrec', embeddings_path)
  config.eval.splits = ('valid', 'test')
  config.train.update(num_steps=8, eval_every=4)
  workdir = str(tmp_path / 'lcrec')
  results = run.train_and_evaluate(config, workdir)
  _, dataset, method, params = run.load_run(workdir)
  fresh = run.evaluate(method, params, dataset, 'valid', config.eval, config.seed)
  timeless = lambda m: {k: v for k, v in m.items() if k != 'eval_seconds'}
  assert timeless(results['splits']['valid']) == pytest.approx(timeless(fresh), rel=1e-6)
  # ... and the final report did not evaluate the validation split again.
  splits = []
  monkeypatch.setattr(run, 'evaluate', lambda m, p, d, split, *a: splits.append(split) or {})
  run.train_and_evaluate(config, workdir, eval_only=True)
  assert splits == ['test']
