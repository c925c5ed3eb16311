"""LLM item-text embeddings (embed.source='llm'): mean last hidden states, cached, and the
SIDs of RQ-KMeans, SKT and RQ-VAE built from them. A tiny GGUF checkpoint written by
test_gguf stands in for SmolLM2 (same loader, same code path)."""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from genrec_jax import config as config_lib
from genrec_jax import run
from genrec_jax.data.load import load_dataset
from genrec_jax.embed import cache
from genrec_jax.embed import llm
from genrec_jax.models import pretrained
from genrec_jax.models import transformer

TEXTS = ['Title: Toy Story; Year: 1995', 'Heat', 'Title: ' + 'word ' * 30]


@pytest.fixture(scope='module')
def tiny_gguf(tmp_path_factory):
  import test_gguf  # pylint: disable=g-import-not-at-top
  return test_gguf._write_tiny(tmp_path_factory.mktemp('tiny'), 'llama')[1]  # pylint: disable=protected-access


def test_embedding_is_the_mean_hidden_state_of_each_text_alone(tiny_gguf):
  embeddings = llm.encode_texts(TEXTS, tiny_gguf, batch_size=2, max_length=16,
                                show_progress=False)
  model = pretrained.load(tiny_gguf)
  network = transformer.Transformer(model.config)
  forward = jax.jit(lambda params, ids: network.apply({'params': params}, ids,
                                                      return_hidden=True).hidden[0])
  assert embeddings.shape == (len(TEXTS), model.config.hidden_size)
  for text, row in zip(TEXTS, embeddings):
    ids = model.encode(text)[:16]  # cut to max_length
    hidden = forward(model.params, jnp.asarray([ids]))
    np.testing.assert_allclose(row, np.asarray(hidden).mean(axis=0), atol=1e-5)
  assert len(model.encode(TEXTS[2])) > 16  # the cut is exercised
  assert not np.allclose(embeddings[0], embeddings[1])


def test_llm_source_is_cached_under_its_checkpoint(tiny_gguf, tmp_path, monkeypatch):
  import test_embed  # pylint: disable=g-import-not-at-top
  dataset = test_embed._dataset()  # pylint: disable=protected-access
  config = cache.default_embed_config()
  config.update(source='llm', model=tiny_gguf, max_length=32)
  first = cache.item_embeddings(config, dataset, str(tmp_path))
  texts = cache.render_item_texts(dataset, 'movielens', config.max_chars_per_field)
  np.testing.assert_allclose(first, llm.encode_texts(texts, tiny_gguf, max_length=32,
                                                     show_progress=False), atol=1e-6)
  assert first.shape == (dataset.num_items, 32)
  (cached,) = os.listdir(tmp_path / 'embeddings')
  assert cached.startswith('llm-movielens-')

  def fail(*args, **kwargs):
    raise AssertionError('the LLM ran although its embeddings are cached')
  monkeypatch.setattr(llm, 'encode_texts', fail)
  np.testing.assert_array_equal(cache.item_embeddings(config, dataset, str(tmp_path)), first)
  os.utime(tiny_gguf, ns=(1, 1))  # another checkpoint file: encoded again
  with pytest.raises(AssertionError, match='cached'):
    cache.item_embeddings(config, dataset, str(tmp_path))


def _config(config_name, tiny_gguf, **tokenize):
  config = config_lib.load_config_file(f'configs/{config_name}_ins.py:smoke')
  config.embed.update(source='llm', model=tiny_gguf, batch_size=64, max_length=32)
  config.tokenize.update(**tokenize)
  return config


@pytest.mark.slow  # ~15 s idle: the smoke dataset through three tokenizers
def test_llm_embeddings_feed_skt_rq_kmeans_and_rqvae(tiny_gguf, tmp_path, monkeypatch):
  config = _config('ghost', tiny_gguf)  # SKT
  workdir = str(tmp_path / 'run')
  run.train_and_evaluate(config, workdir, tokenize_only=True)
  (cached,) = os.listdir(os.path.join(workdir, 'embeddings'))
  embeddings = np.load(os.path.join(workdir, 'embeddings', cached))
  dataset = load_dataset(config.data, workdir)
  assert embeddings.shape == (dataset.num_items, 32) and np.isfinite(embeddings).all()

  def fail(*args, **kwargs):
    raise AssertionError('the LLM ran although its embeddings are cached')
  monkeypatch.setattr(llm, 'encode_texts', fail)
  for tokenize in (dict(method='rq_kmeans', levels=3), dict(method='rqvae', levels=3)):
    used, sids = run.item_sids(_config('ghost', tiny_gguf, **tokenize), dataset, workdir)
    np.testing.assert_array_equal(used, embeddings)
    assert sids.num_items == dataset.num_items
  assert sorted(f.split('-')[0] for f in os.listdir(os.path.join(workdir, 'sids'))) == [
      'rq_kmeans', 'rqvae', 'skt']
