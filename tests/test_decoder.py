"""Tests for genrec_jax.models: tiny HF checkpoints against an independent NumPy reference."""

from __future__ import annotations

import functools
import json
import math
import os

import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np
import optax
import pytest
import safetensors.numpy
import tokenizers
from tokenizers import decoders
from tokenizers import models
from tokenizers import pre_tokenizers
from tokenizers import trainers
import transformers

from genrec_jax.models import hf_loading
from genrec_jax.models import transformer
from genrec_jax.models.transformer_config import TransformerConfig

TOL = dict(rtol=1e-4, atol=1e-4)

# Jitted entry points (the model is static and hashable): eager dispatch would compile every
# primitive separately, which is far slower than one compile per config and shape.
_prefill = jax.jit(transformer.prefill, static_argnums=(0, 4))
_decode_step = jax.jit(transformer.decode_step, static_argnums=0)


# Tests share shapes (batch 3, length 7; prompts of 4 + 3 decode steps) so that compiles
# are reused across tests of the same architecture.
BATCH, LENGTH, PROMPT_LENGTH = 3, 7, 4


@functools.partial(jax.jit, static_argnums=0)
def _forward(model, params, tokens, positions=None, mask=None):
  return model.apply({'params': params}, tokens, positions, mask, return_hidden=True)

# Tiny architectures covering what differs between the families.
SPECS = {
    # Biases on q/k/v (not o), GQA 4:2, tied head, Qwen2.5's rope_theta.
    'qwen2': (transformers.Qwen2Config, dict(
        vocab_size=61, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=True,
        rope_theta=1e6, rms_norm_eps=1e-6)),
    # Per-head q/k RMSNorm, head_dim 16 != 32 / 4, untied head.
    'qwen3': (transformers.Qwen3Config, dict(
        vocab_size=53, hidden_size=32, intermediate_size=40, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, head_dim=16, tie_word_embeddings=False,
        rms_norm_eps=1e-5)),
    # Multi-query (1 kv head), biases on q/k/v/o, Llama 3.1 RoPE scaling, untied head.
    'llama': (transformers.LlamaConfig, dict(
        vocab_size=47, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=1, attention_bias=True,
        tie_word_embeddings=False, max_position_embeddings=64, rms_norm_eps=1e-5,
        rope_parameters=dict(rope_type='llama3', rope_theta=500000.0, factor=8.0,
                             low_freq_factor=1.0, high_freq_factor=4.0,
                             original_max_position_embeddings=16))),
}


# ---------------------------------------------------------------------------
# NumPy reference (float64), written from the equations of HF modeling_qwen2 / qwen3 /
# llama. It reads HF weight names directly and shares no code with the library.
# ---------------------------------------------------------------------------


def _ref_rms_norm(x, weight, eps):
  return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps) * weight


def _ref_inv_freq(head_dim, rope):
  freqs = [1.0 / rope['rope_theta'] ** (j / head_dim) for j in range(0, head_dim, 2)]
  if rope.get('rope_type', 'default') != 'llama3':
    return np.array(freqs)
  out = []
  old = rope['original_max_position_embeddings']
  low, high, factor = rope['low_freq_factor'], rope['high_freq_factor'], rope['factor']
  for freq in freqs:
    wavelength = 2 * math.pi / freq
    if wavelength < old / high:
      out.append(freq)
    elif wavelength > old / low:
      out.append(freq / factor)
    else:
      smooth = (old / wavelength - low) / (high - low)
      out.append((1 - smooth) * freq / factor + smooth * freq)
  return np.array(out)


def _ref_rope(x, positions, inv_freq):
  """x [T, heads, H]: HF apply_rotary_pos_emb with rotate_half."""
  emb = np.concatenate([np.outer(positions, inv_freq)] * 2, axis=-1)[:, None, :]
  half = x.shape[-1] // 2
  rotated = np.concatenate([-x[..., half:], x[..., :half]], axis=-1)
  return x * np.cos(emb) + rotated * np.sin(emb)


def _ref_forward(weights, hf, tokens):
  """(logits [T, V], final hidden [T, D]) of one unpadded sequence, positions 0..T-1."""
  w = {k: np.asarray(v, np.float64) for k, v in weights.items()}
  heads, kv_heads = hf['num_attention_heads'], hf['num_key_value_heads']
  head_dim = hf.get('head_dim') or hf['hidden_size'] // heads
  eps = hf['rms_norm_eps']
  inv_freq = _ref_inv_freq(head_dim, hf['rope_parameters'])
  length = len(tokens)
  positions = np.arange(length)
  linear = lambda x, name: x @ w[name + '.weight'].T + w.get(name + '.bias', 0.0)
  x = w['model.embed_tokens.weight'][np.asarray(tokens)]
  for i in range(hf['num_hidden_layers']):
    pre = f'model.layers.{i}.'
    h = _ref_rms_norm(x, w[pre + 'input_layernorm.weight'], eps)
    q = linear(h, pre + 'self_attn.q_proj').reshape(length, heads, head_dim)
    k = linear(h, pre + 'self_attn.k_proj').reshape(length, kv_heads, head_dim)
    v = linear(h, pre + 'self_attn.v_proj').reshape(length, kv_heads, head_dim)
    if hf['model_type'] == 'qwen3':
      q = _ref_rms_norm(q, w[pre + 'self_attn.q_norm.weight'], eps)
      k = _ref_rms_norm(k, w[pre + 'self_attn.k_norm.weight'], eps)
    q, k = _ref_rope(q, positions, inv_freq), _ref_rope(k, positions, inv_freq)
    k = np.repeat(k, heads // kv_heads, axis=1)  # HF repeat_kv: head n reads kv n // G
    v = np.repeat(v, heads // kv_heads, axis=1)
    out = np.zeros((length, heads, head_dim))
    for n in range(heads):
      scores = q[:, n] @ k[:, n].T / math.sqrt(head_dim)
      scores = np.where(np.tril(np.ones((length, length), bool)), scores, -np.inf)
      probs = np.exp(scores - scores.max(axis=-1, keepdims=True))
      out[:, n] = (probs / probs.sum(axis=-1, keepdims=True)) @ v[:, n]
    x = x + linear(out.reshape(length, heads * head_dim), pre + 'self_attn.o_proj')
    h = _ref_rms_norm(x, w[pre + 'post_attention_layernorm.weight'], eps)
    gate, up = linear(h, pre + 'mlp.gate_proj'), linear(h, pre + 'mlp.up_proj')
    x = x + linear(gate / (1 + np.exp(-gate)) * up, pre + 'mlp.down_proj')
  hidden = _ref_rms_norm(x, w['model.norm.weight'], eps)
  head = w['model.embed_tokens.weight'] if hf['tie_word_embeddings'] else w['lm_head.weight']
  return hidden @ head.T, hidden


# ---------------------------------------------------------------------------
# Tiny checkpoints, written with the Hugging Face names.
# ---------------------------------------------------------------------------


def _random_weights(hf, seed=0):
  rng = np.random.default_rng(seed)
  d, f, vocab = hf['hidden_size'], hf['intermediate_size'], hf['vocab_size']
  heads, kv_heads = hf['num_attention_heads'], hf['num_key_value_heads']
  head_dim = hf.get('head_dim') or d // heads
  qwen2 = hf['model_type'] == 'qwen2'
  weights = {}
  dense = lambda out, inp: rng.normal(0, 1 / math.sqrt(inp), (out, inp))
  norm = lambda n: 1 + 0.2 * rng.normal(size=n)
  weights['model.embed_tokens.weight'] = rng.normal(size=(vocab, d))
  weights['model.norm.weight'] = norm(d)
  if not hf['tie_word_embeddings']:
    weights['lm_head.weight'] = dense(vocab, d)
  for i in range(hf['num_hidden_layers']):
    pre = f'model.layers.{i}.'
    weights[pre + 'input_layernorm.weight'] = norm(d)
    weights[pre + 'post_attention_layernorm.weight'] = norm(d)
    for name, out in (('q', heads), ('k', kv_heads), ('v', kv_heads)):
      weights[f'{pre}self_attn.{name}_proj.weight'] = dense(out * head_dim, d)
      if qwen2 or hf.get('attention_bias'):
        weights[f'{pre}self_attn.{name}_proj.bias'] = 0.3 * rng.normal(size=out * head_dim)
    weights[pre + 'self_attn.o_proj.weight'] = dense(d, heads * head_dim)
    if hf.get('attention_bias') and not qwen2:
      weights[pre + 'self_attn.o_proj.bias'] = 0.3 * rng.normal(size=d)
    if hf['model_type'] == 'qwen3':
      weights[pre + 'self_attn.q_norm.weight'] = norm(head_dim)
      weights[pre + 'self_attn.k_norm.weight'] = norm(head_dim)
    weights[pre + 'mlp.gate_proj.weight'] = dense(f, d)
    weights[pre + 'mlp.up_proj.weight'] = dense(f, d)
    weights[pre + 'mlp.down_proj.weight'] = dense(d, f)
  return weights


def _write_checkpoint(directory, family, *, dtype=np.float32, shards=1, edit=None):
  """Saves config.json + safetensors; returns (HF config dict, weights as saved)."""
  config_cls, kwargs = SPECS[family]
  config_cls(**kwargs).save_pretrained(directory)
  hf = transformers.AutoConfig.from_pretrained(directory).to_dict()
  weights = {k: np.asarray(v, dtype) for k, v in _random_weights(hf).items()}
  if edit:
    edit(weights)
  names = sorted(weights)
  if shards == 1:
    safetensors.numpy.save_file(weights, os.path.join(directory, 'model.safetensors'))
  else:
    weight_map = {}
    for s in range(shards):
      file = f'model-{s + 1:05d}-of-{shards:05d}.safetensors'
      part = {n: weights[n] for n in names[s::shards]}
      safetensors.numpy.save_file(part, os.path.join(directory, file))
      weight_map.update({n: file for n in part})
    with open(os.path.join(directory, 'model.safetensors.index.json'), 'w') as f:
      json.dump({'metadata': {}, 'weight_map': weight_map}, f)
  return hf, weights


def _padded_batch(sequences, length, side):
  tokens = np.full((len(sequences), length), -1, np.int32)  # -1: padding ids are ignored
  mask = np.zeros((len(sequences), length), bool)
  for b, seq in enumerate(sequences):
    cols = slice(length - len(seq), length) if side[b] == 'left' else slice(0, len(seq))
    tokens[b, cols], mask[b, cols] = seq, True
  return tokens, mask


def _sequences(vocab, lengths, seed=1):
  rng = np.random.default_rng(seed)
  return [rng.integers(0, vocab, size=n).tolist() for n in lengths]


# ---------------------------------------------------------------------------
# Forward pass equals the reference.
# ---------------------------------------------------------------------------


@pytest.mark.parametrize('family,dtype,shards', [
    ('qwen2', np.float32, 1),
    ('qwen2', ml_dtypes.bfloat16, 1),
    ('qwen3', np.float32, 1),
    ('llama', np.float32, 2),
])
def test_forward_matches_numpy_reference(tmp_path, family, dtype, shards):
  hf, weights = _write_checkpoint(tmp_path, family, dtype=dtype, shards=shards)
  ckpt = hf_loading.load_checkpoint(tmp_path)
  assert ckpt.tokenizer is None
  assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(ckpt.params))
  model = transformer.Transformer(ckpt.config)

  sequences = _sequences(hf['vocab_size'], [LENGTH, 4, 5])
  tokens, mask = _padded_batch(sequences, LENGTH, ['left', 'left', 'right'])
  out = _forward(model, ckpt.params, tokens, None, mask)  # positions from the mask
  assert out.logits.shape == (BATCH, LENGTH, hf['vocab_size'])
  assert out.logits.dtype == jnp.float32
  for b, seq in enumerate(sequences):
    want_logits, want_hidden = _ref_forward(weights, hf, seq)
    cols = np.flatnonzero(mask[b])
    np.testing.assert_allclose(out.logits[b, cols], want_logits, **TOL)
    np.testing.assert_allclose(out.hidden[b, cols], want_hidden, **TOL)


def test_reference_comparison_can_fail(tmp_path):
  """Explicit positions: 0..T-1 match, stretched ones (RoPE sees differences only) do not."""
  hf, weights = _write_checkpoint(tmp_path, 'qwen3')
  ckpt = hf_loading.load_checkpoint(tmp_path)
  sequences = _sequences(hf['vocab_size'], [LENGTH] * BATCH)
  tokens, mask = np.asarray(sequences), np.ones((BATCH, LENGTH), bool)
  model = transformer.Transformer(ckpt.config)
  want = _ref_forward(weights, hf, sequences[0])[0]
  positions = np.tile(np.arange(LENGTH), (BATCH, 1))
  np.testing.assert_allclose(_forward(model, ckpt.params, tokens, positions, mask).logits[0],
                             want, **TOL)
  stretched = _forward(model, ckpt.params, tokens, 2 * positions, mask).logits[0]
  assert not np.allclose(stretched, want, **TOL)


# ---------------------------------------------------------------------------
# KV cache.
# ---------------------------------------------------------------------------


@pytest.mark.parametrize('family', ['qwen2', 'qwen3', 'llama'])
def test_cached_decoding_equals_full_forward(tmp_path, family):
  hf, _ = _write_checkpoint(tmp_path, family)
  ckpt = hf_loading.load_checkpoint(tmp_path)
  model = transformer.Transformer(ckpt.config)
  prompt_len, steps = PROMPT_LENGTH, LENGTH - PROMPT_LENGTH
  prompts = _sequences(hf['vocab_size'], [4, 3, 2])
  prompt_tokens, prompt_mask = _padded_batch(prompts, prompt_len, ['left', 'left', 'right'])
  continuation = np.asarray(_sequences(hf['vocab_size'], [steps] * 3, seed=2), np.int32)

  full_tokens = np.concatenate([prompt_tokens, continuation], axis=1)
  full_mask = np.concatenate([prompt_mask, np.ones_like(continuation, bool)], axis=1)
  full = _forward(model, ckpt.params, full_tokens, None, full_mask).logits

  logits, cache = _prefill(model, ckpt.params, prompt_tokens, prompt_mask, prompt_len + steps)
  last_real = np.array([3, 3, 1])  # left-padded rows end at T-1, the right-padded one earlier
  np.testing.assert_allclose(logits, full[np.arange(3), last_real], **TOL)
  for leaf in jax.tree.leaves(cache):
    assert leaf.shape[0] == 3  # batch-leading: beam search gathers rows
  for step in range(steps):
    logits, cache = _decode_step(model, ckpt.params, continuation[:, step], cache)
    np.testing.assert_allclose(logits, full[:, prompt_len + step], **TOL)
  np.testing.assert_array_equal(cache['index'], prompt_len + steps)
  np.testing.assert_array_equal(cache['position'], [4 + steps, 3 + steps, 2 + steps])


def _left_padded_prompts(tmp_path, family):
  """(hf config, checkpoint, model, tokens, mask): three left-padded prompts of 4, 2, 3."""
  hf, _ = _write_checkpoint(tmp_path, family)
  ckpt = hf_loading.load_checkpoint(tmp_path)
  tokens, mask = _padded_batch(_sequences(hf['vocab_size'], [4, 2, 3]), PROMPT_LENGTH,
                               ['left'] * 3)
  return hf, ckpt, transformer.Transformer(ckpt.config), tokens, mask


def test_cache_rows_can_be_gathered_like_beams(tmp_path):
  _, ckpt, model, tokens, mask = _left_padded_prompts(tmp_path, 'qwen3')
  _, cache = _prefill(model, ckpt.params, tokens, mask, LENGTH)
  next_tokens = jnp.asarray([3, 9, 5])
  logits, _ = _decode_step(model, ckpt.params, next_tokens, cache)

  beams = jnp.asarray([1, 0, 1])  # reorder and duplicate rows, as a beam search does
  beam_cache = jax.tree.map(lambda x: x[beams], cache)
  beam_logits, _ = _decode_step(model, ckpt.params, next_tokens[beams], beam_cache)
  np.testing.assert_allclose(beam_logits, logits[beams], rtol=1e-6, atol=1e-6)


def test_shared_prompt_decoding_equals_a_repeated_full_cache(tmp_path):
  hf, ckpt, model, tokens, mask = _left_padded_prompts(tmp_path, 'qwen2')
  beams, steps = 2, 3
  _, full = _prefill(model, ckpt.params, tokens, mask, PROMPT_LENGTH + steps)
  full = jax.tree.map(lambda x: jnp.repeat(x, beams, axis=0), full)
  _, small, prompt = jax.jit(transformer.prefill_shared, static_argnums=(0, 4))(
      model, ckpt.params, tokens, mask, steps)
  small = jax.tree.map(lambda x: jnp.repeat(x, beams, axis=0), small)
  assert small['layers'][0]['k'].shape[1] == steps  # only the generated tokens per beam
  step = jax.jit(transformer.decode_step, static_argnums=0)
  rng = np.random.default_rng(0)
  for _ in range(steps):
    next_tokens = jnp.asarray(rng.integers(0, hf['vocab_size'], 3 * beams))
    expected, full = step(model, ckpt.params, next_tokens, full)
    got, small = step(model, ckpt.params, next_tokens, small, prompt)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
    order = jnp.asarray(rng.permutation(beams))  # reorder beams within each user
    rows = (jnp.arange(3)[:, None] * beams + order[None]).reshape(-1)
    full, small = (jax.tree.map(lambda x: x[rows], c) for c in (full, small))


@pytest.mark.parametrize('family', ['qwen3', 'llama'])
def test_branch_logits_equal_each_branch_run_on_its_own(tmp_path, family):
  """Branches (Ghost's distractors) against the brute force: tokens[:start] + branch."""
  hf, _ = _write_checkpoint(tmp_path, family)
  ckpt = hf_loading.load_checkpoint(tmp_path)
  model = transformer.Transformer(ckpt.config)
  rng = np.random.default_rng(3)
  tokens, mask = _padded_batch(_sequences(hf['vocab_size'], [7, 5]), LENGTH, ['right'] * 2)
  branches = rng.integers(0, hf['vocab_size'], (2, 3, 3)).astype(np.int32)
  branches[0, 1, 2] = -1  # a shorter branch
  branches[1, 2] = -1  # an unused one
  starts = np.array([[0, 3, 6], [2, 5, 1]], np.int32)
  seq_logits, branch_logits = jax.jit(
      lambda p, *a: model.apply({'params': p}, *a, method=model.branch_logits))(
          ckpt.params, tokens, mask, branches, starts)
  full = _forward(model, ckpt.params, tokens, None, mask).logits
  np.testing.assert_allclose(seq_logits, full, **TOL)
  for b in range(2):
    for r in range(3):
      branch = branches[b, r][branches[b, r] >= 0]
      if not len(branch):
        continue
      alone = np.concatenate([tokens[b, :starts[b, r]], branch])[None]
      expected = _forward(model, ckpt.params, alone).logits[0, starts[b, r]:]
      np.testing.assert_allclose(branch_logits[b, r, :len(branch)], expected, **TOL)


# ---------------------------------------------------------------------------
# Loader errors.
# ---------------------------------------------------------------------------


def _load_error(tmp_path, family, edit):
  _write_checkpoint(tmp_path, family, edit=edit)
  with pytest.raises(hf_loading.CheckpointError) as error:
    hf_loading.load_checkpoint(tmp_path)
  return str(error.value)


def test_missing_weight_is_named(tmp_path):
  message = _load_error(tmp_path, 'qwen3',
                        lambda w: w.pop('model.layers.1.self_attn.k_norm.weight'))
  assert 'missing weight model.layers.1.self_attn.k_norm.weight' in message
  assert 'layers_1/attention/k_norm/scale' in message


def test_missing_untied_head_suggests_tying(tmp_path):
  message = _load_error(tmp_path, 'llama', lambda w: w.pop('lm_head.weight'))
  assert 'missing weight lm_head.weight' in message and 'tie_word_embeddings' in message


def test_unexpected_weight_is_named_with_its_file(tmp_path):
  def add_bias(w):
    w['model.layers.0.self_attn.o_proj.bias'] = np.zeros(32, np.float32)
  message = _load_error(tmp_path, 'qwen3', add_bias)
  assert 'unexpected weight model.layers.0.self_attn.o_proj.bias in model.safetensors' in message


def test_misshaped_weight_is_named_with_shapes(tmp_path):
  def shrink(w):
    w['model.layers.0.self_attn.q_proj.weight'] = np.zeros((32, 32), np.float32)
  message = _load_error(tmp_path, 'qwen3', shrink)
  assert 'model.layers.0.self_attn.q_proj.weight in model.safetensors has shape (32, 32)' in message
  assert 'expected (64, 32)' in message


def test_tied_checkpoint_may_carry_a_copy_of_the_head(tmp_path):
  def add_head(w):
    w['lm_head.weight'] = w['model.embed_tokens.weight'].copy()
  _write_checkpoint(tmp_path, 'qwen2', edit=add_head)
  ckpt = hf_loading.load_checkpoint(tmp_path)
  assert 'lm_head' not in ckpt.params


def test_unsupported_configs_raise_clear_errors(tmp_path):
  _, kwargs = SPECS['qwen3']
  yarn = dict(kwargs, rope_parameters=dict(rope_type='yarn', rope_theta=1e4, factor=4.0,
                                           original_max_position_embeddings=32))
  transformers.Qwen3Config(**yarn).save_pretrained(tmp_path)
  with pytest.raises(ValueError, match="RoPE scaling type 'yarn' is not supported"):
    TransformerConfig.from_hf(tmp_path)
  with pytest.raises(ValueError, match="model_type 'mistral' is not supported"):
    TransformerConfig.from_hf(dict(model_type='mistral', vocab_size=8))
  with pytest.raises(FileNotFoundError, match='No config.json'):
    TransformerConfig.from_hf(tmp_path / 'nowhere')


# ---------------------------------------------------------------------------
# Vocabulary extension and partial training.
# ---------------------------------------------------------------------------


@pytest.mark.parametrize('family', ['qwen2', 'qwen3'])  # tied and untied heads
def test_extend_vocab_keeps_old_logits(tmp_path, family):
  hf, _ = _write_checkpoint(tmp_path, family)
  ckpt = hf_loading.load_checkpoint(tmp_path)
  vocab = hf['vocab_size']
  params, config = hf_loading.extend_vocab(ckpt.params, ckpt.config, 5, jax.random.key(0))
  assert config.vocab_size == vocab + 5
  embedding = params['embedder']['embedding']
  assert embedding.shape == (vocab + 5, 32)
  np.testing.assert_array_equal(embedding[:vocab], ckpt.params['embedder']['embedding'])
  old_mean = np.mean(ckpt.params['embedder']['embedding'], axis=0)
  assert np.abs(embedding[vocab:] - old_mean).max() < 1.0  # mean + small noise
  assert np.unique(np.asarray(embedding[vocab:]), axis=0).shape[0] == 5  # noise: rows differ
  if 'lm_head' in params:
    assert params['lm_head']['kernel'].shape == (32, vocab + 5)

  tokens, mask = np.asarray(_sequences(vocab, [LENGTH] * BATCH)), np.ones((BATCH, LENGTH), bool)
  old = _forward(transformer.Transformer(ckpt.config), ckpt.params, tokens, None, mask).logits
  new_model = transformer.Transformer(config)
  new = _forward(new_model, params, tokens, None, mask).logits
  assert new.shape == (BATCH, LENGTH, vocab + 5)
  np.testing.assert_allclose(new[..., :vocab], old, rtol=1e-5, atol=1e-5)
  tokens[0, 2:4] = vocab, vocab + 4  # semantic-ID tokens
  with_sid = _forward(new_model, params, tokens, None, mask).logits
  assert np.isfinite(with_sid).all()


def test_extend_vocab_into_padded_rows(tmp_path):
  """Qwen-style padded vocab: new ids start at the tokenizer length, inside the matrix."""
  _write_checkpoint(tmp_path, 'qwen3')  # 53 rows; pretend the tokenizer has 50 tokens
  ckpt = hf_loading.load_checkpoint(tmp_path)
  params, config = hf_loading.extend_vocab(ckpt.params, ckpt.config, 6, jax.random.key(1),
                                           first_new_id=50, init='normal')
  assert config.vocab_size == 56
  np.testing.assert_array_equal(params['lm_head']['kernel'][:, :50],
                                ckpt.params['lm_head']['kernel'][:, :50])
  assert not np.allclose(params['lm_head']['kernel'][:, 50:53],
                         ckpt.params['lm_head']['kernel'][:, 50:53])


def test_partial_optimizer_trains_only_new_rows(tmp_path):
  _write_checkpoint(tmp_path, 'qwen3')
  ckpt = hf_loading.load_checkpoint(tmp_path)
  vocab = ckpt.config.vocab_size
  params, _ = hf_loading.extend_vocab(ckpt.params, ckpt.config, 4, jax.random.key(0))
  labels = hf_loading.param_labels(params)
  assert labels['embedder']['embedding'] == 'vocab' and labels['lm_head']['kernel'] == 'vocab'
  assert labels['layers_0']['mlp']['up_proj']['kernel'] == 'backbone'

  tx = hf_loading.partial_optimizer(optax.adamw(0.1, weight_decay=0.5), params,
                                    first_new_id=vocab, train_backbone=False,
                                    train_old_vocab=False)
  grads = jax.tree.map(jnp.ones_like, params)
  updates, _ = jax.jit(tx.update)(grads, tx.init(params), params)
  new_params = optax.apply_updates(params, updates)
  np.testing.assert_array_equal(new_params['layers_1']['attention']['q_proj']['kernel'],
                                params['layers_1']['attention']['q_proj']['kernel'])
  for old_rows, new_rows in ((lambda x: x['embedder']['embedding'][:vocab],
                              lambda x: x['embedder']['embedding'][vocab:]),
                             (lambda x: x['lm_head']['kernel'][:, :vocab],
                              lambda x: x['lm_head']['kernel'][:, vocab:])):
    np.testing.assert_array_equal(old_rows(new_params), old_rows(params))
    assert np.all(new_rows(new_params) != new_rows(params))


# ---------------------------------------------------------------------------
# Tokenizer, bfloat16 activations.
# ---------------------------------------------------------------------------


def test_tokenizer_loads_with_the_checkpoint(tmp_path):
  tok = tokenizers.Tokenizer(models.BPE())
  tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
  tok.decoder = decoders.ByteLevel()
  trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=['<|endoftext|>'],
                                initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                show_progress=False)
  tok.train_from_iterator(['the movie about space', 'a song about the sea'] * 5, trainer)
  transformers.PreTrainedTokenizerFast(
      tokenizer_object=tok, eos_token='<|endoftext|>').save_pretrained(tmp_path)
  _write_checkpoint(tmp_path, 'qwen2')
  ckpt = hf_loading.load_checkpoint(tmp_path)
  text = 'the song about space'
  assert ckpt.tokenizer(text)['input_ids'] == tok.encode(text).ids


def test_bfloat16_activations_are_close(tmp_path):
  _write_checkpoint(tmp_path, 'qwen2')
  ckpt32 = hf_loading.load_checkpoint(tmp_path)
  ckpt16 = hf_loading.load_checkpoint(tmp_path, dtype='bfloat16')
  assert ckpt16.config.dtype == jnp.bfloat16
  assert ckpt16.params['embedder']['embedding'].dtype == jnp.float32  # params stay float32
  tokens, mask = np.asarray(_sequences(61, [LENGTH] * BATCH)), np.ones((BATCH, LENGTH), bool)
  model16 = transformer.Transformer(ckpt16.config)
  logits16 = _forward(model16, ckpt16.params, tokens, None, mask).logits
  model32 = transformer.Transformer(ckpt32.config)
  logits32 = _forward(model32, ckpt32.params, tokens, None, mask).logits
  assert logits16.dtype == jnp.float32
  scale = float(jnp.std(logits32))
  assert float(jnp.max(jnp.abs(logits16 - logits32))) < 0.1 * scale
  assert model16.init_cache(1, 4)['layers'][0]['k'].dtype == jnp.bfloat16
