"""Backbones of the generative stage, one small adapter each.

A backbone maps SID-token histories to next-token logits, with the calls `generative.py`
needs:
  init(rng) -> params
  continuation_logits(params, history [B, Th] left-padded, inputs [B, R, L-1], rng)
      -> logits [B, R, L, V]; logits[:, r, i] is the distribution of token i of
         continuation r given the history and the decoder inputs inputs[:, r, :i]. The
         inputs are given apart from the labels: teacher forcing passes the labels' first
         L-1 tokens, GENPLUGIN-style substitution passes others
  sequence_logits(params, tokens [B, T], valid [B, T], rng)
      -> causal logits [B, T, V] (whole-sequence training; decoder-only backbones)
  branch_logits(params, tokens [B, T], valid [B, T], branches [B, R, Lb], starts [B, R])
      -> (sequence logits [B, T, V], branch logits [B, R, Lb, V]): branch r of row b as if
         it replaced the row's tokens from slot starts[b, r] on (Ghost's distractors)
  prefill(params, history, max_decode_len) -> (first-token logits [B, V], cache, shared)
  decode_step(params, tokens [B * E], cache, shared) -> (logits [B * E, V], cache)
      the beam search repeats `cache` per beam (E beams) and gathers it along with them;
      `shared` (per user, or None) is read by every beam and never copied
Item-level methods (SimGR) read a user state from the same backbone with two more calls:
  history_states(params, history [B, T] left-padded, rng) -> [B, T, D] final-norm hidden
      states of the history (decoder: causal, so the last position has read all of it;
      encoder-decoder: the bidirectional encoder's output); padding positions are arbitrary
  token_embeddings(params) -> [V, D] the input token embedding table
  state_logits(params, states [..., D]) -> [..., V] the output head on decoder states (a
      decoder-only LM's states over history + SID tokens give the SID's logits in one pass)
Methods that change what the decoder reads (GENPLUGIN: a language view of the history,
retrieved users, mixed decoder inputs) use the same forward pass in two halves:
  encode(params, history, rng) -> Memory: what the decoder reads of the history
  decode(params, memory, inputs [B, R, L-1], rng, embeddings=None)
      -> (logits [B, R, L, V] as continuation_logits, context [B, S, D]: the states at the
         memory positions: the encoder output given, or the decoder's own hidden states);
         `embeddings` [B, R, L-1, D] replace the inputs' embeddings (ids still mark padding)
  continuation_logits(params, history, inputs, rng) = decode(encode(history), inputs)[0]
  prefill(params, history, max_decode_len, memory) with extra Memory read before the history
"""

from __future__ import annotations

import functools
from typing import NamedTuple

from flax import linen as nn
import jax
import jax.numpy as jnp

from genrec_jax.models import t5 as t5_lib
from genrec_jax.models import transformer as transformer_lib


class Memory(NamedTuple):
  """What a decoder reads before it generates: states [B, S, D], mask [B, S] (True = real).

  Encoder–decoder: the encoder output its cross-attention reads; decoder-only: the prompt's
  input vectors, which the LM's own layers read. Memories concatenate along S.
  """
  states: jax.Array
  mask: jax.Array

  @staticmethod
  def concat(*memories: Memory) -> Memory:
    return Memory(jnp.concatenate([m.states for m in memories], axis=1),
                  jnp.concatenate([m.mask for m in memories], axis=1))


def _input_embeddings(backbone, params, tokens):
  """The decoder's input embeddings [..., D] of token ids [...] (negative ids embed as 0)."""
  return jnp.take(backbone.token_embeddings(params), jnp.maximum(tokens, 0), axis=0)


class DecoderBackbone:
  """A decoder-only LM (Qwen2/Qwen3/LLaMA family): history tokens, then the SID."""

  def __init__(self, model: transformer_lib.Transformer, init_params=None):
    self.model = model
    self._init_params = init_params  # e.g. a loaded Hugging Face checkpoint

  def init(self, rng):
    if self._init_params is not None:
      return self._init_params
    return self.model.init(rng, jnp.zeros((1, 1), jnp.int32))['params']

  def continuation_logits(self, params, history, inputs, rng):
    return self.decode(params, self.encode(params, history, rng), inputs, rng)[0]

  def encode(self, params, history, rng):
    del rng  # no dropout in the LLM backbones
    return Memory(_input_embeddings(self, params, history), history >= 0)

  def decode(self, params, memory, inputs, rng, embeddings=None):
    del rng
    apply = functools.partial(self.model.apply, {'params': params})
    hidden_states = transformer_lib.Transformer.hidden_states
    batch, num_cont, length = inputs.shape[0], inputs.shape[1], inputs.shape[2] + 1
    prompt_len = memory.mask.shape[1]
    context, full = apply(jnp.zeros(memory.mask.shape, jnp.int32), None, memory.mask,
                          transformer_lib.init_cache(self.model.config, batch, prompt_len),
                          embedded=memory.states, method=hidden_states)
    last = prompt_len - 1 - jnp.argmax(memory.mask[:, ::-1], axis=1)  # last real prompt slot
    first_logits = apply(jnp.take_along_axis(context, last[:, None, None], axis=1),
                         method=transformer_lib.Transformer.logits)[:, 0]
    if length == 1:
      return jnp.broadcast_to(first_logits[:, None, None], (batch, num_cont, 1,
                                                            first_logits.shape[-1])), context
    # The continuations of a row read its prompt's keys as a shared prompt, never copied per
    # continuation (as a beam search reads it).
    cache = transformer_lib.init_cache(self.model.config, batch * num_cont, length - 1)
    cache['position'] = jnp.repeat(full['position'], num_cont)
    prompt = {'mask': full['mask'], 'layers': full['layers']}
    inputs = inputs.reshape(batch * num_cont, length - 1)
    if embeddings is not None:
      embeddings = embeddings.reshape(batch * num_cont, length - 1, -1)
    hidden, _ = apply(inputs, None, inputs >= 0, cache, prompt=prompt, embedded=embeddings,
                      method=hidden_states)
    rest = apply(hidden, method=transformer_lib.Transformer.logits)
    rest = rest.reshape(batch, num_cont, length - 1, -1)
    first = jnp.broadcast_to(first_logits[:, None, None], (batch, num_cont, 1, rest.shape[-1]))
    return jnp.concatenate([first, rest], axis=2), context

  def sequence_logits(self, params, tokens, valid, rng):
    del rng
    return self.model.apply({'params': params}, tokens, mask=valid).logits

  def branch_logits(self, params, tokens, valid, branches, starts):
    return self.model.apply({'params': params}, tokens, valid, branches, starts,
                            method=transformer_lib.Transformer.branch_logits)

  def prefill(self, params, history, max_decode_len, memory=None):
    if memory is None:
      return transformer_lib.prefill_shared(self.model, params, history, history >= 0,
                                            max_decode_len)
    prompt = Memory.concat(memory, self.encode(params, history, None))
    return self.model.apply({'params': params}, jnp.zeros(prompt.mask.shape, jnp.int32),
                            prompt.mask, max_decode_len, embedded=prompt.states,
                            method=transformer_lib.Transformer.prefill_shared)

  def decode_step(self, params, tokens, cache, shared):
    return transformer_lib.decode_step(self.model, params, tokens, cache, shared)

  def history_states(self, params, history, rng):
    del rng
    hidden, _ = self.model.apply({'params': params}, history, None, history >= 0,
                                 method=transformer_lib.Transformer.hidden_states)
    return hidden

  def token_embeddings(self, params):
    return nn.unbox(params['embedder']['embedding'])  # boxed when straight from init

  def state_logits(self, params, states):
    return self.model.apply({'params': params}, states, method=transformer_lib.Transformer.logits)


class EncoderDecoderBackbone:
  """A T5-style encoder–decoder (TIGER): the encoder reads the history, the decoder the SID
  after a start token. Dropout is active in training (rng given) and off otherwise."""

  def __init__(self, model: t5_lib.T5, start_token: int):
    self.model = model
    self.start_token = start_token

  def init(self, rng):
    return self.model.init(rng, jnp.zeros((1, 1), jnp.int32), jnp.ones((1, 1), bool),
                           jnp.zeros((1, 1), jnp.int32))['params']

  def continuation_logits(self, params, history, inputs, rng):
    return self.decode(params, self.encode(params, history, rng), inputs, rng)[0]

  def encode(self, params, history, rng):
    return Memory(self.history_states(params, history, rng), history >= 0)

  def decode(self, params, memory, inputs, rng, embeddings=None):
    batch, num_cont, length = inputs.shape[0], inputs.shape[1], inputs.shape[2] + 1
    train = rng is not None
    rngs = {'dropout': rng} if train else {}
    repeat = lambda x: jnp.repeat(x, num_cont, axis=0)
    starts = jnp.full((batch * num_cont, 1), self.start_token, inputs.dtype)
    if embeddings is None:
      inputs = jnp.concatenate([starts, inputs.reshape(batch * num_cont, length - 1)], axis=1)
      logits = self.model.apply({'params': params}, inputs, repeat(memory.states),
                                repeat(memory.mask), train, method=t5_lib.T5.decode, rngs=rngs)
    else:
      embedded = jnp.concatenate([_input_embeddings(self, params, starts),
                                  embeddings.reshape(batch * num_cont, length - 1, -1)], axis=1)
      logits = self.model.apply({'params': params}, embedded, repeat(memory.states),
                                repeat(memory.mask), train, method=t5_lib.T5.decode_embedded,
                                rngs=rngs)
    return logits.reshape(batch, num_cont, length, -1), memory.states

  def prefill(self, params, history, max_decode_len, memory=None):
    if memory is None:
      logits, cache = t5_lib.prefill(self.model, params, history, history >= 0, max_decode_len,
                                     self.start_token)
      return logits, cache, None  # the encoder states travel in the per-beam cache
    memory = Memory.concat(memory, self.encode(params, history, None))
    cache = t5_lib.init_cache(self.model.config, memory.states, memory.mask, max_decode_len)
    start = jnp.full((history.shape[0],), self.start_token, jnp.int32)
    logits, cache = t5_lib.decode_step(self.model, params, start, cache)
    return logits, cache, None

  def decode_step(self, params, tokens, cache, shared):
    del shared
    return t5_lib.decode_step(self.model, params, tokens, cache)

  def history_states(self, params, history, rng):
    train = rng is not None
    return self.model.apply({'params': params}, history, history >= 0, train,
                            method=t5_lib.T5.encode, rngs={'dropout': rng} if train else {})

  def token_embeddings(self, params):
    return nn.unbox(params['shared']['embedding'])  # boxed when straight from init

  def state_logits(self, params, states):
    return self.model.apply({'params': params}, states, method=t5_lib.T5.logits)
