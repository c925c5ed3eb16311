"""GenAIR: co-occurrence strengths by brute force, the calibration term of a batch against a
double loop over its target pairs (both of its forms), the adapter as the item table at the
encoder's input and output, and (slow) the smoke configs end to end."""

import itertools
import json
import math
import os

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from genrec_jax import config as config_lib
from genrec_jax import run
from genrec_jax.data import dataset as dataset_lib
from genrec_jax.data import synthetic
from genrec_jax.methods import genair
from genrec_jax.methods.sequential import MLPAdapter
from genrec_jax.methods.sequential import SequentialOutputs
from genrec_jax.methods.sequential import SequentialRecommender
from genrec_jax.models.sasrec import SASRec
from launch import sweep

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope='module')
def ds():
  raw = synthetic.generate(num_users=30, num_items=12, mean_length=7, seed=2)
  return dataset_lib.preprocess(raw, kcore=2, max_history=4)


def test_cooccurrence_strength_counts_users_holding_both_items_in_training(ds):
  counts = np.zeros((ds.num_items, ds.num_items))
  for u in range(ds.num_users):
    for i, j in itertools.permutations(set(ds.train_sequence(u).tolist()), 2):
      counts[i, j] += 1
  expected = np.log1p(counts) / np.log1p(counts.max())
  np.testing.assert_allclose(genair.cooccurrence_strength(ds), expected, rtol=1e-6)


def _double_loop(vectors, targets, strength, gamma):
  """GenAIR's L_cal over the batch's valid target positions, pair by pair, in float64."""
  items = [int(t) for t in np.ravel(targets) if t >= 0]
  unit = {i: vectors[i] / np.linalg.norm(vectors[i]) for i in set(items)}
  total, n = 0.0, len(items)
  for a in range(n):
    for b in range(n):
      if a != b:
        s = strength[items[a], items[b]]
        w = math.exp(-gamma * s) if s > 0 else 1.0
        total += w * float(np.sum((unit[items[a]] - unit[items[b]]) ** 2))
  return -total / (n * (n - 1))


@pytest.mark.parametrize('shape', [(5,), (4, 6)])  # per-target form; per-item form (24 > 12)
def test_calibration_term_equals_a_double_loop_over_target_pairs(ds, shape):
  rng = np.random.default_rng(1)
  strength = genair.cooccurrence_strength(ds)
  term = genair.Calibration(strength, gamma=4.0, alpha=1e-4)
  adapted = rng.normal(size=(ds.num_items, 8)).astype(np.float32)
  targets = rng.integers(0, ds.num_items, shape)
  targets.flat[1] = -1  # padding
  value, metrics = jax.jit(lambda t, a: term(SequentialOutputs(
      states=jnp.zeros(shape + (8,)), targets=t, item_vectors=a, adapted=a)))(
          jnp.asarray(targets), jnp.asarray(adapted))
  np.testing.assert_allclose(float(value), _double_loop(adapted, targets, strength, 4.0),
                             rtol=1e-5)
  assert term.weight == 1e-4 and float(metrics['calibration']) == float(value)


def test_mlp_adapter_is_the_item_table_at_input_and_output():
  frozen = np.random.default_rng(0).normal(size=(9, 7)).astype(np.float32)
  encoder = SASRec(num_items=9, max_len=4, hidden=6, num_layers=1, dropout=0.0)
  method = SequentialRecommender(encoder, 4, frozen_item_embeddings=frozen,
                                 adapter=MLPAdapter(10))
  params = nn.unbox(jax.jit(method.init)(jax.random.PRNGKey(0)))
  a = params['adapter']
  h = frozen @ np.asarray(a['in']['kernel']) + np.asarray(a['in']['bias'])
  h = (h - h.mean(-1, keepdims=True)) / np.sqrt(h.var(-1, keepdims=True) + 1e-5)
  h = h * np.asarray(a['norm']['scale']) + np.asarray(a['norm']['bias'])
  h = 0.5 * h * (1 + np.vectorize(math.erf)(h / math.sqrt(2)))  # exact GELU
  expected = h @ np.asarray(a['out']['kernel']) + np.asarray(a['out']['bias'])
  vectors = np.asarray(jax.jit(method.item_vectors)(params))
  np.testing.assert_allclose(vectors, expected, rtol=1e-4, atol=1e-5)
  history = jnp.asarray([[-1, 3, 1, 8]])
  own = {k: v for k, v in params.items() if k != 'adapter'}
  encode = jax.jit(lambda v: encoder.apply({'params': own}, history, item_vectors=v,
                                           method='encode'))
  states = encode(jnp.asarray(vectors))
  np.testing.assert_allclose(jax.jit(method.user_states)(params, history), states[:, -1],
                             rtol=1e-5, atol=1e-6)
  own_table = jax.jit(lambda: encoder.apply({'params': own}, history, method='encode'))()
  assert np.abs(np.asarray(own_table - states)).max() > 1e-3  # the ID table is not read


@pytest.mark.parametrize('variant', [
    *(pytest.param(v, marks=pytest.mark.slow)
      for v in ('smoke_sasrec', 'smoke_bert4rec', 'smoke_gru4rec')),
    'smoke_bert4rec_plain'])  # in the default suite: it also runs the table's report step
def test_smoke_configs_train_and_evaluate(tmp_path, variant):
  config = config_lib.load_config_file(os.path.join(ROOT, f'configs/genair_ins.py:{variant}'))
  config.data.tfds_dir = str(tmp_path / 'tfds')
  config.name = 'BERT4Rec'
  workdir = tmp_path / 'root' / 'BERT4Rec' / 'seed0'
  results = run.train_and_evaluate(config, str(workdir))
  assert 0 < results['splits']['test']['hr@20'] <= 1
  if variant.endswith('_plain'):  # the table's report step, as `launch.sweep --report` runs it
    table = sweep.load_module(os.path.join(ROOT, 'experiments/genair_table.py'))
    text = sweep.write_report(table, str(tmp_path / 'root'), '', str(tmp_path / 'out' / 'genair'))
    sampled = json.loads((workdir / 'results_sampled.json').read_text())
    assert 'sampled' in sampled['protocol'] and 0 < sampled['splits']['test']['hr@20'] <= 1
    full, sampled_part = text.split('## 100 sampled negatives')
    assert '| BERT4Rec | 1 |' in full and '| BERT4Rec | 1 |' in sampled_part.split('###')[0]
