"""GENPLUGIN (methods/genplugin.py, genplugin_retrieval.py): the backbone halves it reads,
exposure-bias substitution (rate and mixture), the two views, retrieval (fusion, BM25
against a brute force, the leak check) and phase 2's freezing. Tiny shapes; the end-to-end
runs of both phases are marked slow."""

import dataclasses
import json
import math
import os
import re

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from experiments import exposure_bias
from genrec_jax import config as config_lib
from genrec_jax import losses
from genrec_jax.data import dataset as dataset_lib
from genrec_jax.data import synthetic
from genrec_jax.data.pipeline import train_iterator
from genrec_jax.methods import backbones
from genrec_jax.methods import genplugin
from genrec_jax.methods import genplugin_retrieval as retrieval
from genrec_jax.methods.generative import GenerativeRecommender
from genrec_jax.models import t5 as t5_lib
from genrec_jax.models import transformer as transformer_lib
from genrec_jax.models.transformer_config import TransformerConfig
from genrec_jax.tokenize.sid_table import SIDTable
from genrec_jax.train import loop
from genrec_jax.train import state as state_lib

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope='module')
def ds():
  raw = synthetic.generate(num_users=40, num_items=30, mean_length=8, seed=3)
  return dataset_lib.preprocess(raw, kcore=2, max_history=4)


def _sids(num_items):
  """Variable-length SIDs: even items 2 levels + EOS, odd items 3 levels."""
  codes = np.full((num_items, 3), -1, np.int32)
  codes[:, 0] = np.arange(num_items) // 8
  codes[:, 1] = np.arange(num_items) % 8 // 2
  odd = np.arange(num_items) % 2 == 1
  codes[odd, 2] = np.arange(num_items)[odd] % 5
  return SIDTable(codes=codes, level_sizes=(num_items // 8 + 1, 4, 5), ends_with_eos=~odd,
                  level_names=('a', 'b', 't'))


def _base(kind, sids, num_items, max_history):
  if kind == 'decoder':
    backbone = backbones.DecoderBackbone(transformer_lib.Transformer(TransformerConfig(
        vocab_size=sids.vocab_size, hidden_size=16, intermediate_size=32,
        num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=1,
        model_type='qwen2', attention_bias=True, tie_word_embeddings=True)))
  else:
    backbone = backbones.EncoderDecoderBackbone(t5_lib.T5(t5_lib.T5Config(
        vocab_size=sids.vocab_size + 1, d_model=16, num_heads=2, head_dim=8, d_ff=32,
        num_encoder_layers=1, num_decoder_layers=1, dropout=0.0)), sids.vocab_size)
  return GenerativeRecommender(backbone, sids, num_items, max_history=max_history,
                               beam_size=num_items, token_base=0)


def _config(**genplugin_fields):
  g = genplugin.default_config('lcrec').genplugin
  g.update(language_layers=1, projection_dim=8, retrieval_top=6, retrieval_keep=4,
           **genplugin_fields)
  return ml_collections.ConfigDict({'genplugin': g, 'train': state_lib.default_train_config()})


@pytest.fixture(scope='module', params=['decoder', 't5'])
def plugged(request, ds):
  """(GenPlugin, params, a training batch) on each backbone."""
  sids = _sids(ds.num_items)
  rng = np.random.default_rng(0)
  method = genplugin.GenPlugin(
      _base(request.param, sids, ds.num_items, ds.max_history),
      _config(substitute_batch_prob=1.0, substitute_position_prob=1.0),
      text_vectors=rng.normal(size=(ds.num_items, 6)),
      cf_user_vectors=rng.normal(size=(ds.num_users, 5)))
  params = nn.unbox(jax.jit(method.init)(jax.random.PRNGKey(0)))
  batch = next(train_iterator(ds, batch_size=8, seed=0))
  return method, params, batch


# ------------------------------------------------------------------- backbone halves --


def test_decode_of_encode_is_continuation_logits_and_memory_prefills_alike(plugged):
  method, params, batch = plugged
  base = method.backbone.base
  extra = backbones.Memory(jax.random.normal(jax.random.PRNGKey(1), (8, 3, 16)),
                           jnp.array([[True, False, True]] * 8))

  @jax.jit
  def outputs(bp, history, targets):
    history = method.prompt_tokens(history)
    inputs = method.prefix_labels(targets)[..., :-1]
    want = base.continuation_logits(bp, history, inputs, None)
    memory = base.encode(bp, history, None)
    as_embeddings = jnp.take(base.token_embeddings(bp), jnp.maximum(inputs, 0), axis=0)
    got, context = base.decode(bp, memory, inputs, None, as_embeddings)
    first = base.prefill(bp, history, 4, memory=extra)[0]
    full = base.decode(bp, backbones.Memory.concat(extra, memory), inputs, None)[0]
    return want, got, context, first, full

  want, got, context, first, full = outputs(params['backbone'], batch['history'],
                                            batch['target'])
  np.testing.assert_allclose(got, want, atol=1e-5)
  assert context.shape[0] == 8 and context.shape[-1] == 16
  # Extra memory: prefill's first-token logits equal decode's over [extra; history].
  np.testing.assert_allclose(first, full[:, 0, 0], atol=1e-5)
  assert not np.allclose(first, want[:, 0, 0], atol=1e-3)  # the extra memory is read


# ---------------------------------------------------------------------- substitution --


def test_substitution_rate_statistically():
  draws, length, p_batch, p_pos = 10000, 4, 0.5, 0.4
  keys = jax.random.split(jax.random.PRNGKey(0), draws)
  masks = np.asarray(jax.jit(jax.vmap(lambda k: genplugin.substitution_mask(
      k, jnp.bool_(True), length, p_batch, p_pos)))(keys))
  assert not masks[:, 0].any()  # the first decoder input is never replaced
  sigma = math.sqrt(p_batch * p_pos * (1 - p_batch * p_pos) / draws)
  np.testing.assert_allclose(masks[:, 1:].mean(0), p_batch * p_pos, atol=5 * sigma)
  # One batch draw for every position: positions are replaced together, P = p_batch·p_pos².
  both = (masks[:, 1] & masks[:, 2]).mean()
  assert abs(both - p_batch * p_pos**2) < 5 * math.sqrt(p_batch * p_pos**2 / draws)
  idle = jax.vmap(lambda k: genplugin.substitution_mask(k, jnp.bool_(False), length, 1.0,
                                                        1.0))(keys[:100])
  assert not np.asarray(idle).any()  # before the start epoch nothing is replaced


def test_top_k_mixture_weights_by_hand():
  rng = np.random.default_rng(5)
  logits, table = rng.normal(size=(2, 9)) * 2, rng.normal(size=(9, 3))
  mixture, weights, tokens = genplugin.top_k_mixture(jnp.asarray(logits, jnp.float32),
                                                     jnp.asarray(table, jnp.float32), 3)
  for row in range(2):
    top = sorted(range(9), key=lambda v: -logits[row, v])[:3]
    exps = [math.exp(logits[row, v] - logits[row, top[0]]) for v in top]
    want_w = [e / sum(exps) for e in exps]
    assert list(np.asarray(tokens[row])) == top
    np.testing.assert_allclose(weights[row], want_w, rtol=1e-5)
    np.testing.assert_allclose(mixture[row], sum(w * table[v] for w, v in zip(want_w, top)),
                               rtol=1e-5, atol=1e-6)


def test_substituted_inputs_are_the_language_paths_top_k_mixtures(plugged):
  """p_batch = p_pos = 1: every input i >= 1 of the target is its mixture; the ID logits
  equal decoding those embeddings, and positions before the first replaced input keep
  their teacher-forced logits."""
  method, params, batch = plugged
  batch = jax.tree.map(jnp.asarray, batch)

  @jax.jit
  def substituted(params):
    out, replaced = method.plugin_outputs(params, batch, None, jnp.bool_(True))
    return out.id_logits, out.text_logits, replaced

  id_logits, text_logits, replaced = substituted(params)
  assert list(np.asarray(replaced)) == [False, True]
  base, bp = method.backbone.base, params['backbone']
  inputs = method.prefix_labels(batch['target'])[:, 0, :-1]
  table = np.asarray(base.token_embeddings(bp), np.float64)
  text = np.asarray(text_logits, np.float64)[:, :-1]  # token i's language logits
  tokens = table[np.maximum(np.asarray(inputs), 0)]
  mixed = tokens.copy()
  for b in range(text.shape[0]):
    if inputs[b, 1] >= 0:
      top = np.argsort(-text[b, 1], kind='stable')[:5]
      weights = np.exp(text[b, 1, top] - text[b, 1, top].max())
      mixed[b, 1] = (weights / weights.sum()) @ table[top]

  @jax.jit
  def decode(bp, embeddings):  # both input versions in one batch: mixed, then tokens
    history = jnp.concatenate([batch['history']] * 2)
    return base.decode(bp, base.encode(bp, method.prompt_tokens(history), None),
                       jnp.concatenate([inputs] * 2)[:, None], None, embeddings)[0][:, 0]

  want, teacher = jnp.split(decode(bp, jnp.asarray(np.concatenate([mixed, tokens])[:, None],
                                                   jnp.float32)), 2)
  np.testing.assert_allclose(id_logits, want, atol=2e-4)
  np.testing.assert_allclose(id_logits[:, :2], teacher[:, :2], atol=1e-5)
  assert not np.allclose(id_logits[:, 2], teacher[:, 2], atol=1e-4)


# ---------------------------------------------------------------------------- views --


def test_item_views_sum_each_history_items_token_states(ds):
  sids = _sids(ds.num_items)
  item_tokens = jnp.asarray(sids.item_tokens())
  history = jnp.asarray(next(train_iterator(ds, batch_size=6, seed=1))['history'])
  owner = genplugin.history_token_owner(item_tokens, history)
  tokens = genplugin.history_tokens(item_tokens, history)
  states = jax.random.normal(jax.random.PRNGKey(0), (*tokens.shape, 3))
  views = np.asarray(genplugin.item_views(states, owner, history.shape[1]))
  for b in range(history.shape[0]):
    position = int(np.sum(np.asarray(tokens[b]) < 0))  # the stream is left-padded
    for h in range(history.shape[1]):
      item = int(history[b, h])
      length = 0 if item < 0 else int(np.sum(np.asarray(item_tokens[item]) >= 0))
      np.testing.assert_allclose(views[b, h], np.asarray(states[b, position:position + length])
                                 .sum(0), atol=1e-5)
      position += length


def test_view_contrast_batch_mean_is_the_two_way_infonce_mean_over_items():
  rng = np.random.default_rng(3)
  id_views, text_views = rng.normal(size=(2, 3, 4, 5))
  mask = np.array([[True] * 4, [False, False, True, True], [False, True, True, True]])
  out = genplugin.PluginOutputs(items=None, counted=None, nll=None, id_views=id_views,
                                text_views=text_views, view_mask=mask)
  values, _ = genplugin.ViewContrast(0.1, 0.9)(out)
  a, b, v = id_views.reshape(-1, 5), text_views.reshape(-1, 5), mask.reshape(-1)
  per_item = losses.info_nce(a, b, v, 0.9) + losses.info_nce(b, a, v, 0.9)
  np.testing.assert_allclose(np.sum(values) / 3, np.sum(per_item) / v.sum(), rtol=1e-5)


# ------------------------------------------------------------------------- retrieval --


def test_fusion_of_a_hand_made_case():
  context = np.array([[3, 1, 2, -1], [2, 3, 0, -1], [0, 1, 3, -1], [0, 1, 2, -1]])
  collaborative = np.array([[2, 3, 4, -1], [0, 4, 3, 2], [3, 4, -1, -1], [4, 2, 1, 0]])
  embeddings = np.array([[1.0, 0.0], [0.6, 0.8], [0.8, -0.6], [0.0, 1.0], [-1.0, 0.0]])
  fused = retrieval.fuse(context, collaborative, embeddings, keep=4)
  # user 0: both lists hold 3 and 2 (context order: 3, 2); then 1, 4 by cosine with user 0
  # (1 · 0.6 against -1).
  assert list(fused[0]) == [3, 2, 1, 4]
  # user 1 (at (0.6, 0.8)): in both 2, 3, 0; then 4.
  assert list(fused[1]) == [2, 3, 0, 4]
  # user 2 (at (0.8, -0.6)): in both 3; then 0 (0.8), 1 (0), 4 (-0.8).
  assert list(fused[2]) == [3, 0, 1, 4]
  assert list(retrieval.fuse(context, collaborative, embeddings, keep=2)[3]) == [0, 1]
  short = retrieval.fuse(np.array([[1, -1]]), np.array([[-1, -1]]), embeddings, keep=3)
  assert list(short[0]) == [1, -1, -1]


def test_bm25_neighbours_equal_a_brute_force_lucene_bm25():
  documents = [retrieval.tokenize(t) for t in (
      'Toy Story (1995) Heat (1995) Toy Story', 'GoldenEye (1995) Heat (1995)',
      'Star Wars (1977) Empire Strikes Back (1980)', 'Toy Soldiers (1991) Star Trek',
      'Heat Wave (1990) GoldenEye (1995) Star Wars', 'Casablanca (1942)')]
  assert documents[0] == ['toy', 'story', '1995', 'heat', '1995', 'toy', 'story']
  k1, b = 1.5, 0.75  # bm25s's defaults (Lucene variant)
  n, avg = len(documents), np.mean([len(d) for d in documents])

  def score(query, doc):
    total = 0.0
    for word in query:  # every occurrence of a query word counts, as bm25s sums them
      df = sum(word in d for d in documents)
      tf = doc.count(word)
      total += (math.log(1 + (n - df + 0.5) / (df + 0.5))
                * tf / (tf + k1 * (1 - b + b * len(doc) / avg)))
    return total

  brute = np.array([[score(q, d) for d in documents] for q in documents])
  want = [[j for j in sorted(range(n), key=lambda j: (-brute[i, j], j)) if j != i][:3]
          for i in range(n)]
  assert retrieval.bm25_neighbours(documents, 3).tolist() == want
  for i, row in enumerate(brute):  # no ties decide a neighbour of this corpus
    others = sorted((row[j] for j in range(n) if j != i), reverse=True)
    assert others[2] - others[3] > 1e-3 or others[2] == 0


def test_cosine_neighbours_leave_the_user_out():
  vectors = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [-1.0, 0.0]])
  assert retrieval.cosine_neighbours(vectors, 2).tolist() == [[1, 2], [0, 2], [1, 0],
                                                              [2, 1]]


def test_leak_check_no_self_and_no_neighbours_valid_or_test_item(plugged, ds):
  method, params, _ = plugged
  with pytest.raises(AssertionError, match='their own neighbours'):
    genplugin.check_no_leak(np.array([[1, 2], [1, 0]]))
  # Every user's valid and test items replaced: the retrieval's inputs do not move.
  seq = ds.seq_items.copy()
  for end in ds.seq_offsets[1:]:
    seq[end - 2:end] = (seq[end - 2:end] + 7) % ds.num_items
  changed = dataclasses.replace(ds, seq_items=seq)
  cf = method.cf_user_vectors
  fused = {}
  for name, data in (('same', ds), ('changed', changed)):
    assert retrieval.user_documents(data, 20) == retrieval.user_documents(ds, 20)
    embeddings = method.user_embeddings(params, data.histories('valid')[0])
    fused[name] = retrieval.neighbours(data, cf, embeddings, top=6, keep=4)[0]
  np.testing.assert_array_equal(fused['same'], fused['changed'])
  genplugin.check_no_leak(fused['same'])
  assert (fused['same'] >= 0).all()


# --------------------------------------------------------------------------- phase 2 --


def test_phase_two_trains_the_decoder_and_freezes_the_encoders_bit_for_bit(plugged, ds,
                                                                         tmp_path):
  method, params, _ = plugged
  phase = method.next_phase(params, ds, str(tmp_path))
  assert phase.name == 'finetune' and phase.train.num_epochs == 1
  assert os.path.exists(tmp_path / 'finetune' / 'retrieval.npz')
  tx, schedule = state_lib.make_optimizer(phase.train, 10, phase.method.restrict_optimizer)
  state = state_lib.TrainState(step=jnp.zeros((), jnp.int32), params=params,
                               opt_state=tx.init(params))
  step = jax.jit(loop.make_train_step(phase.method, tx, schedule))
  batches = train_iterator(ds, batch_size=8, seed=2)
  for i in range(3):
    state, metrics = step(state, jax.tree.map(jnp.asarray, next(batches)),
                          jax.random.PRNGKey(i))
  assert np.isfinite(float(metrics['loss']))
  before = jax.tree_util.tree_flatten_with_path(params)[0]
  after = jax.tree.leaves(state.params)
  base = method.backbone.base
  trained = frozen = 0
  for (path, old), new in zip(before, after):
    if genplugin.is_decoder_param(base, path):
      trained += not np.array_equal(old, new)
    else:
      np.testing.assert_array_equal(old, new, err_msg=jax.tree_util.keystr(path))
      frozen += 1
  assert trained > 0 and frozen > 0
  # The same retrieval is read back (resumed and eval-only runs).
  again = method.next_phase(params, ds, str(tmp_path))
  np.testing.assert_array_equal(again.method.backbone.retrieved.neighbours,
                                phase.method.backbone.retrieved.neighbours)


def test_config_variants_validate_and_bad_values_name_the_field():
  for variant in ('cpu_tiger', 'cpu_lcrec', 'cpu_ghost', 'smoke_tiger', 'smoke_lcrec',
                  'smoke_ghost', 'paper_tiger', 'paper_lcrec', 'paper_ghost'):
    config = config_lib.load_config_file(f'{REPO}/configs/genplugin_ins.py:{variant}')
    assert config.embed.cf_run == 'runs/sasrec'  # the SASRec run the docstring trains first
    config_lib.validate(config)
    assert config.name.endswith(' + GENPLUGIN') and config.train.example_kind == 'prefix'
    assert not config.get('instructions', {}).get('tasks')
  config = config_lib.load_config_file(f'{REPO}/configs/genplugin_ins.py:smoke_lcrec')
  config.embed.cf_run = ''
  with pytest.raises(config_lib.ConfigError, match='Invalid config.embed.cf_run'):
    config_lib.validate(config)
  for field, value in (('genplugin.substitute_batch_prob', 1.5),
                       ('genplugin.retrieval_keep', 99), ('train.example_kind', 'sequence')):
    config = config_lib.load_config_file(f'{REPO}/configs/genplugin_ins.py:smoke_lcrec')
    section, leaf = field.split('.')
    config[section][leaf] = value
    with pytest.raises(config_lib.ConfigError, match=re.escape(f'Invalid config.{field}')):
      config_lib.validate(config)


# ------------------------------------------------------------------- both phases, slow --


@pytest.mark.slow
@pytest.mark.parametrize('base', ['tiger', 'ghost'])
def test_both_phases_run_resume_and_evaluate_alike(base, tmp_path_factory):
  from genrec_jax import run  # pylint: disable=g-import-not-at-top
  root = tmp_path_factory.mktemp('genplugin')
  smoke = lambda spec: config_lib.load_config_file(f'{REPO}/configs/{spec}')
  sasrec = smoke('sasrec_ins.py:smoke')
  sasrec.data.tfds_dir = str(root / 'tfds')
  run.train_and_evaluate(sasrec, str(root / 'sasrec'))
  config = smoke(f'genplugin_ins.py:smoke_{base}')
  config.data.tfds_dir, config.embed.cf_run = str(root / 'tfds'), str(root / 'sasrec')
  workdir = str(root / base)
  results = run.train_and_evaluate(config, workdir)
  assert set(results['phase_seconds']) == {'train', 'finetune setup', 'finetune'}
  with open(os.path.join(workdir, 'finetune', 'metrics.jsonl')) as f:
    assert any(json.loads(line)['event'] == 'valid' for line in f)
  test = lambda r: {k: v for k, v in r['splits']['test'].items() if 'seconds' not in k}
  again = run.train_and_evaluate(config, workdir)  # resumes both finished phases
  assert test(again) == test(results)
  assert test(run.train_and_evaluate(config, workdir, eval_only=True)) == test(results)
  loaded = run.load_run(workdir)
  assert isinstance(loaded.method, genplugin.RetrievalFinetune)
  assert isinstance(run.load_run(workdir, phases=False).method, genplugin.GenPlugin)
  # Beam search reads the retrieved memory as training does: its scores are the sequence
  # log-probabilities of decode over [neighbours; history].
  history, _, targets = loaded.dataset.histories('test')
  batch = {'user': jnp.arange(16), 'history': jnp.asarray(history[:16]),
           'target': jnp.asarray(targets[:16])}
  items, scores = loaded.method.predict_topk(loaded.params, batch, 5)
  np.testing.assert_allclose(scores, loaded.method.score_items(loaded.params, batch, items),
                             atol=1e-4)


def test_exposure_bias_diagnostic_allows_the_tries_children_of_the_true_prefix():
  items = np.array([[0, 3, 6], [0, 3, 7], [0, 4, -1], [1, 5, 8]])
  allowed = exposure_bias.allowed_after_prefixes(items, np.array([1, 3]))
  as_sets = [[set(np.flatnonzero(level)) for level in row] for row in allowed]
  assert as_sets[0] == [{0, 1}, {3, 4}, {6, 7}]  # item 1 = (0, 3, 7)
  assert as_sets[1] == [{0, 1}, {5}, {8}]  # item 3 = (1, 5, 8)
