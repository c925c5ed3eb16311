r"""GENPLUGIN (Yang et al., 2025): a plug-in around a generative recommender X that adds a
language view of the history, trains against exposure bias, then fine-tunes the decoder
with retrieved users for the long tail. `genplugin.base` names X (tiger, lcrec, letter,
ghost); X's own SIDs, backbone, loss terms and beam search are kept, so "X + GENPLUGIN"
rows sit beside X.

Parts (Memory: what a decoder reads, see backbones.py):
  ID encoder        X's own reading of the history's SID tokens: TIGER's T5 encoder; on the
                    decoder-only LM, its token embeddings and its own layers (the LM is both).
  language encoder  one text vector per history item (the embed stage's item vectors, e.g.
                    MiniLM) -> projection head (Linear E->P, Linear P->D, as the public code)
                    -> a bidirectional T5 encoder stack (genplugin.language_layers).
  shared decoder    X's decoder reads either encoder's states: cross-attention in T5, a prompt
                    of input vectors in the decoder-only LM.

Phase 1, pre-training (per target v, SID tokens c_1..c_L; sums over the SID's tokens, as the
NLL of every generative row here):
  CE_id    −Σ_i log p_id(c_i | h, ĉ_<i), and X's other terms (Ghost's AUO)
  CE_text  −Σ_i log p_text(c_i | text(h), c_<i)                        'nll_text'
  KL       Σ_i KL(p_id ‖ p_text) + KL(p_text ‖ p_id) of token i's distributions at
           temperature T, over the full vocabulary                                  'kl'
  CL       InfoNCE between each history item's ID view (the sum of the ID encoder's states
           at its SID tokens) and its language view (the language encoder's state), both
           directions, temperature τ, every other history item of the batch a negative;
           the mean over the batch's history items                                  'infonce'
  loss  =  CE_id + CE_text + λ_kl·KL + λ_cl·CL   (λ_kl 0.5, T 0.85, λ_cl 0.1, τ 0.9)
  ĉ: exposure-bias substitution. From epoch genplugin.substitute_from_epoch on, a batch is
  chosen with probability p_batch (0.5); in it, each decoder input position i >= 1 (the
  token c_i fed to predict c_{i+1}) is replaced with probability p_pos (0.4), one draw per
  position for the whole batch as in the public code, by Σ_k w_k E[t_k]: t_1..t_k (k = 5)
  the language path's top tokens for c_i, w their softmax (their probabilities renormalised)
  and E the ID decoder's input embeddings. All inside the jitted step.
  Validation and test decode with the ID path alone, as X does.

Phase 2, retrieval-augmented long-tail fine-tuning ('finetune', methods.Phase), from phase
1's best params, in workdir/finetune/: related users of every user (genplugin_retrieval.py:
BM25 over item titles + SASRec user vectors of the run embed.cf_run, fused, top 30); their
cached embeddings (the phase-1 ID encoder's mean state over their training history, so never
a valid or test item) are read by the decoder as extra memory before the history; the
language encoder, the ID encoder and the input embeddings (tied to the output layer, as T5's
shared table is) are frozen; the rest of the decoder trains with CE_id alone; beam search
reads the same memory. The neighbours and embeddings are cached in
workdir/finetune/retrieval.npz, so resumed and eval-only runs read the same ones.

Deviations from the public code (KDEGroup/GenPlugin), each a choice stated here:
  * CE and KL are summed over the SID's tokens per target (the public code averages over
    tokens): at the same λ_cl the contrastive term weighs ~1/L as much against CE.
  * mixture weights are the softmax of the top-k logits; the public code divides the raw
    logits by their sum, which flips sign or explodes when the logits straddle zero.
  * one neighbour list per user (from their training items) serves their training examples,
    validation and test; the public code re-queries per training prefix and per split.
  * the decoder-only LM reads the language states and the retrieved embeddings as prompt
    input vectors (the public code has T5 backbones only).
  * gradient clipping applies (train.grad_clip); the public code's does nothing.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import time
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from genrec_jax.config import ConfigError
from genrec_jax.losses import info_nce
from genrec_jax.losses import symmetric_kl
from genrec_jax.losses import target_log_probs
from genrec_jax.methods import BuildInputs
from genrec_jax.methods import MethodSpec
from genrec_jax.methods import Phase
from genrec_jax.methods import backbones
from genrec_jax.methods import genplugin_retrieval as retrieval_lib
from genrec_jax.methods import ghost
from genrec_jax.methods import lcrec
from genrec_jax.methods import letter
from genrec_jax.methods import tiger
from genrec_jax.methods.backbones import Memory
from genrec_jax.methods.generative import GenerativeRecommender
from genrec_jax.methods.loss_terms import NLL
from genrec_jax.methods.loss_terms import TargetOutputs
from genrec_jax.methods.sid_tokens import compact
from genrec_jax.methods.sid_tokens import history_tokens
from genrec_jax.methods.sid_tokens import item_tokens_of
from genrec_jax.models import t5 as t5_lib

SPEC = MethodSpec(family='generative', needs=('sids', 'embeddings', 'user_vectors'))
BASES = {'tiger': tiger, 'lcrec': lcrec, 'letter': letter, 'ghost': ghost}
FINETUNE = 'finetune'  # phase 2's name and folder


def default_config(base: str = 'lcrec', backbone: str | None = None) -> ml_collections.ConfigDict:
  """X's fields (with its own backbone field for letter/ghost) plus GENPLUGIN's."""
  if base not in BASES:
    raise ValueError(f'Invalid config.genplugin.base {base!r}: use one of {sorted(BASES)}.')
  module = BASES[base]
  config = module.default_config(backbone) if backbone else module.default_config()
  config.update({
      'genplugin': dict(
          base=base,
          language_layers=2, projection_dim=2048,  # language encoder: depth, projection width
          kl_weight=0.5, kl_temperature=0.85, cl_weight=0.1, cl_temperature=0.9,
          # Exposure-bias substitution (fractional epochs allowed).
          substitute_from_epoch=1.0, substitute_batch_prob=0.5, substitute_position_prob=0.4,
          substitute_top_k=5,
          # Phase 2: related users, and the fine-tuning budget (0 epochs and steps: none).
          retrieval_top=50, retrieval_keep=30, retrieval_history=20,
          finetune_epochs=1, finetune_steps=0, finetune_lr=0.0),  # lr 0: train.lr
      'train': dict(example_kind='prefix'),
  })
  return config


def default_config_for(config) -> ml_collections.ConfigDict:
  base = config.genplugin.base
  backbone = config.get(base, {}).get('backbone') if base in ('letter', 'ghost') else None
  return default_config(base, backbone)


def validate_config(config) -> None:
  g = config.genplugin
  BASES[g.base].validate_config(config)
  checks = [
      (config.train.example_kind == 'prefix', 'train.example_kind',
       "GENPLUGIN trains per example: set it to 'prefix'"),
      (not tuple(config.get('instructions', {}).get('tasks', ())), 'instructions.tasks',
       'GENPLUGIN reads the bare SID stream; set it to ()'),
      (config.model.get('train_backbone', True) and config.model.get('train_old_vocab', True),
       'model.train_backbone', 'partial fine-tuning of the wrapped model is not supported '
       'with GENPLUGIN; set model.train_backbone and model.train_old_vocab to True'),
      (g.language_layers >= 1 and g.projection_dim >= 1, 'genplugin.language_layers',
       'language_layers and projection_dim must be >= 1'),
      (g.kl_weight >= 0 and g.cl_weight >= 0, 'genplugin.kl_weight',
       'kl_weight and cl_weight must be >= 0'),
      (g.kl_temperature > 0 and g.cl_temperature > 0, 'genplugin.kl_temperature',
       'kl_temperature and cl_temperature must be > 0'),
      (0 <= g.substitute_batch_prob <= 1 and 0 <= g.substitute_position_prob <= 1,
       'genplugin.substitute_batch_prob', 'substitute_batch_prob and substitute_position_prob '
       'must be in [0, 1]'),
      (g.substitute_top_k >= 1, 'genplugin.substitute_top_k', 'must be >= 1'),
      (g.substitute_from_epoch >= 0, 'genplugin.substitute_from_epoch', 'must be >= 0'),
      (1 <= g.retrieval_keep <= g.retrieval_top and g.retrieval_history >= 1,
       'genplugin.retrieval_keep', 'need 1 <= retrieval_keep <= retrieval_top and '
       'retrieval_history >= 1'),
      (g.finetune_epochs >= 0 and g.finetune_steps >= 0 and g.finetune_lr >= 0,
       'genplugin.finetune_epochs', 'finetune_epochs, finetune_steps and finetune_lr must be '
       '>= 0'),
      (config.embed.cf_run or not (g.finetune_epochs or g.finetune_steps), 'embed.cf_run',
       "GENPLUGIN's fine-tuning retrieves users by a finished SASRec run's user vectors: set "
       'it to that run\'s workdir (or genplugin.finetune_epochs=0 and finetune_steps=0)'),
  ]
  for ok, field, fix in checks:
    if not ok:
      raise ConfigError(f'Invalid config.{field}: {fix}.')


# ------------------------------------------------------------------------------- parts --


class LanguageEncoder(nn.Module):
  """Item text vectors [B, H, E] -> projection head -> T5 encoder stack -> [B, H, D]."""
  config: t5_lib.T5Config  # d_model = the decoder's width; num_encoder_layers = the depth
  projection_dim: int

  @nn.compact
  def __call__(self, vectors: jax.Array, mask: jax.Array, train: bool = False) -> jax.Array:
    dense = lambda width, axes, name: nn.Dense(
        width, kernel_init=nn.with_logical_partitioning(nn.initializers.lecun_normal(), axes),
        name=name)
    x = dense(self.projection_dim, (None, 'mlp'), 'projection_in')(vectors.astype(jnp.float32))
    x = dense(self.config.d_model, ('mlp', 'embed'), 'projection_out')(x)
    return t5_lib.Encoder(self.config, name='encoder')(x, mask, train)


def language_config(backbone, layers: int) -> t5_lib.T5Config:
  """The language encoder's T5 stack, as wide as the wrapped decoder."""
  if isinstance(backbone, backbones.EncoderDecoderBackbone):
    return backbone.model.config.replace(num_encoder_layers=layers)
  cfg = backbone.model.config  # decoder-only: its width, heads and MLP size, no dropout
  return t5_lib.T5Config(vocab_size=1, d_model=cfg.hidden_size,
                         num_heads=cfg.num_attention_heads,
                         head_dim=cfg.hidden_size // cfg.num_attention_heads,
                         d_ff=cfg.intermediate_size, num_encoder_layers=layers,
                         num_decoder_layers=1, dropout=0.0, dtype=cfg.dtype)


class Prompt(NamedTuple):
  """Phase 2's prompt: the history's SID tokens [B, Th] and the users [B] whose retrieved
  neighbours the decoder reads first."""
  tokens: jax.Array
  users: jax.Array


class Retrieved(NamedTuple):
  """Phase 2's memory tables: cached user embeddings [U, D] and neighbours [U, K] (-1 pad)."""
  embeddings: jax.Array
  neighbours: jax.Array

  def memory(self, users: jax.Array) -> Memory:
    neighbours = self.neighbours[users]  # [B, K]
    return Memory(self.embeddings[jnp.maximum(neighbours, 0)], neighbours >= 0)


class PluginBackbone:
  """X's backbone and the language encoder in one param tree {'backbone', 'language'}, with
  the backbone calls generative.py makes (prompts: history tokens, or a Prompt with
  retrieved users when `retrieved` is set). frozen_encoders: the ID encoder's output gets no
  gradient (phase 2; the optimizer freezes the params too)."""

  def __init__(self, base, language: LanguageEncoder, text_vectors: np.ndarray,
               retrieved: Retrieved | None = None, frozen_encoders: bool = False):
    self.base = base
    self.language = language
    self.text_vectors = jnp.asarray(text_vectors, jnp.float32)  # [I, E]
    self.retrieved = retrieved
    self.frozen_encoders = frozen_encoders

  def init(self, rng):
    vectors = jnp.zeros((1, 1, self.text_vectors.shape[1]), jnp.float32)
    language = self.language.init(jax.random.fold_in(rng, 1), vectors, jnp.ones((1, 1), bool))
    return {'backbone': self.base.init(rng), 'language': language['params']}

  def language_memory(self, params, history, rng) -> Memory:
    """The language encoder's states of the history items [B, H] (padding: zero vectors)."""
    mask = history >= 0
    vectors = jnp.where(mask[..., None], self.text_vectors[jnp.maximum(history, 0)], 0.0)
    train = rng is not None
    states = self.language.apply({'params': params['language']}, vectors, mask, train,
                                 rngs={'dropout': rng} if train else {})
    return Memory(states, mask)

  def _split(self, prompt):
    if isinstance(prompt, Prompt):
      return prompt.tokens, self.retrieved.memory(prompt.users)
    return prompt, None

  def memory(self, params, prompt, rng) -> Memory:
    tokens, extra = self._split(prompt)
    memory = self.base.encode(params['backbone'], tokens, rng)
    if self.frozen_encoders:
      memory = jax.lax.stop_gradient(memory)
    return memory if extra is None else Memory.concat(extra, memory)

  def continuation_logits(self, params, prompt, inputs, rng):
    return self.base.decode(params['backbone'], self.memory(params, prompt, rng), inputs,
                            rng)[0]

  def prefill(self, params, prompt, max_decode_len):
    tokens, extra = self._split(prompt)
    return self.base.prefill(params['backbone'], tokens, max_decode_len, memory=extra)

  def decode_step(self, params, tokens, cache, shared):
    return self.base.decode_step(params['backbone'], tokens, cache, shared)


# ----------------------------------------------------------------- exposure-bias substitution --


def substitution_mask(rng, active, length: int, batch_prob: float, position_prob: float):
  """[length] bool: the decoder input positions replaced in this batch. None unless `active`
  and a draw < batch_prob; then each position i >= 1 with probability position_prob (one
  draw per position for the whole batch)."""
  batch_key, position_key = jax.random.split(rng)
  chosen = active & (jax.random.uniform(batch_key) < batch_prob)
  positions = jax.random.uniform(position_key, (length,)) < position_prob
  return chosen & positions & (jnp.arange(length) >= 1)


def top_k_mixture(logits, table, k: int):
  """Σ_k softmax(top-k logits)_k · table[top-k token]: logits [..., V], table [V, D] ->
  ([..., D] mixtures, [..., k] weights, [..., k] tokens)."""
  values, tokens = jax.lax.top_k(logits.astype(jnp.float32), k)
  weights = jax.nn.softmax(values, axis=-1)
  mixture = jnp.einsum('...k,...kd->...d', weights, table[tokens].astype(jnp.float32))
  return mixture, weights, tokens


# ------------------------------------------------------------------------- loss terms --


@dataclasses.dataclass
class PluginOutputs(TargetOutputs):
  """TargetOutputs of the ID path, plus the language path and the two views (per prefix)."""
  labels: Any = None  # [B, L] the target's SID tokens (-1 padding)
  id_logits: Any = None  # [B, L, V] ID path (decoder inputs possibly substituted)
  text_logits: Any = None  # [B, L, V] language path, teacher-forced
  id_views: Any = None  # [B, H, D] per history item: sum of its SID tokens' ID states
  text_views: Any = None  # [B, H, D] per history item: the language encoder's state
  view_mask: Any = None  # [B, H] real history items


class TextNLL:
  """CE_text: −Σ_i log p_text(c_i | text(h), c_<i)."""
  name, branch_items = 'nll_text', None

  def __init__(self, weight: float = 1.0):
    self.weight = weight

  def __call__(self, out: PluginOutputs):
    nll = -target_log_probs(out.text_logits, out.labels).sum(-1)
    return nll, {'nll_text': nll}


class SymmetricKL:
  """Σ_i KL_sym(p_id,i ‖ p_text,i) over the target's SID tokens, at a temperature."""
  name, branch_items = 'kl', None

  def __init__(self, weight: float, temperature: float):
    self.weight, self.temperature = weight, temperature

  def __call__(self, out: PluginOutputs):
    kl = symmetric_kl(out.id_logits, out.text_logits, self.temperature)  # [B, L]
    kl = jnp.sum(jnp.where(out.labels >= 0, kl, 0.0), -1)
    return kl, {'kl': kl}


class ViewContrast:
  """InfoNCE of ID against language views (and back) of every history item of the batch;
  per target: its items' share, so the batch mean is the mean over all items."""
  name, branch_items = 'infonce', None

  def __init__(self, weight: float, temperature: float):
    self.weight, self.temperature = weight, temperature

  def __call__(self, out: PluginOutputs):
    batch, items, dim = out.id_views.shape
    valid = out.view_mask.reshape(-1)
    id_views, text_views = out.id_views.reshape(-1, dim), out.text_views.reshape(-1, dim)
    per_item = (info_nce(id_views, text_views, valid, self.temperature)
                + info_nce(text_views, id_views, valid, self.temperature))
    share = batch / jnp.maximum(valid.sum(), 1)
    values = per_item.reshape(batch, items).sum(-1) * share
    return values, {'infonce': values}


def item_views(states, owner, num_items: int):
  """[B, H, D] sums of states [B, S, D] over the positions each history item owns
  (owner [B, S]: item slot, -1 none)."""
  onehot = jax.nn.one_hot(owner, num_items, dtype=states.dtype)  # -1 -> all zeros
  return jnp.einsum('BSH,BSD->BHD', onehot, states)


# ------------------------------------------------------------------------------ method --


class GenPlugin(GenerativeRecommender):
  """Phase 1: X's ID path (its terms, substitution) and the language path with CE_text, KL
  and InfoNCE; decoding as X. `next_phase` hands on phase 2 (RetrievalFinetune)."""

  def __init__(self, base: GenerativeRecommender, config, text_vectors: np.ndarray,
               cf_user_vectors: np.ndarray | None):
    g = config.genplugin
    if base.instructions is not None:
      raise ValueError('GENPLUGIN reads the bare SID stream; set instructions.tasks=().')
    language = LanguageEncoder(language_config(base.backbone, g.language_layers),
                               g.projection_dim)
    terms = (*base.terms, TextNLL(), SymmetricKL(g.kl_weight, g.kl_temperature),
             ViewContrast(g.cl_weight, g.cl_temperature))
    super().__init__(PluginBackbone(base.backbone, language, text_vectors), base.sids,
                     base.num_items, max_history=base.max_history, beam_size=base.beam_size,
                     token_base=base.token_base, terms=terms, scorer=base.scorer)
    self.config, self.cf_user_vectors = config, cf_user_vectors
    self.settings = g

  def loss_fn(self, params, batch, rng):
    """The loss without substitution (tools, tests); training uses train_loss."""
    return self._loss(params, batch, rng, None)

  def train_loss(self, params, batch, rng, epoch):
    return self._loss(params, batch, rng, epoch >= self.settings.substitute_from_epoch)

  def _loss(self, params, batch, rng, substitute):
    out, replaced = self.plugin_outputs(params, batch, rng, substitute)
    loss, metrics = self.combine(out, out.nll.shape[0])
    return loss, {**metrics, 'substituted': replaced.mean()}

  def plugin_outputs(self, params, batch, rng, substitute=None):
    """(PluginOutputs, [L-1] replaced decoder input positions). substitute: None (teacher
    forcing) or a bool scalar (substitution may draw this batch, see the module doc)."""
    g, plugin = self.settings, self.backbone
    bp, base = params['backbone'], plugin.base
    keys = (None,) * 4 if rng is None else tuple(jax.random.split(rng, 4))
    history, targets = batch['history'], batch['target']
    labels = self.prefix_labels(targets)  # [B, R, L]: the target, then X's branches
    inputs = labels[..., :-1]
    # The language path: teacher-forced, reading the language encoder's states.
    text_memory = plugin.language_memory(params, history, keys[1])
    text_logits = base.decode(bp, text_memory, inputs[:, :1], keys[2])[0][:, 0]  # [B, L, V]
    # The ID path: decoder inputs, some replaced by mixtures of the language path's top-k.
    replaced = jnp.zeros(inputs.shape[-1], bool)
    embeddings = None
    if substitute is not None:
      table = base.token_embeddings(bp)
      embeddings = jnp.take(table, jnp.maximum(inputs, 0), axis=0)  # [B, R, L-1, D]
      mixture = top_k_mixture(text_logits[:, :-1], table, g.substitute_top_k)[0]
      sub_key = keys[3] if keys[3] is not None else jax.random.PRNGKey(0)
      replaced = substitution_mask(sub_key, substitute, inputs.shape[-1],
                                   g.substitute_batch_prob, g.substitute_position_prob)
      swap = replaced[None, :] & (inputs[:, 0] >= 0)  # [B, L-1]: the target's row only
      embeddings = embeddings.at[:, 0].set(jnp.where(swap[..., None], mixture,
                                                     embeddings[:, 0]))
    tokens = history_tokens(self.item_tokens, history)
    id_logits, context = base.decode(bp, base.encode(bp, tokens, keys[0]), inputs, keys[0],
                                     embeddings)
    out = self.prefix_target_outputs(targets, labels, id_logits)
    owner = history_token_owner(self.item_tokens, history)
    return PluginOutputs(
        **{f.name: getattr(out, f.name) for f in dataclasses.fields(TargetOutputs)},
        labels=labels[:, 0], id_logits=id_logits[:, 0], text_logits=text_logits,
        id_views=item_views(context, owner, history.shape[1]), text_views=text_memory.states,
        view_mask=text_memory.mask), replaced

  # ---------------------------------------------------------------------- phase 2 --

  def next_phase(self, params, dataset, workdir):
    g = self.settings
    if not (g.finetune_epochs or g.finetune_steps):
      return None
    folder = os.path.join(workdir, FINETUNE)
    embeddings, neighbours = self.retrieval(params, dataset, folder)
    plugin = self.backbone
    backbone = PluginBackbone(plugin.base, plugin.language, np.asarray(plugin.text_vectors),
                              Retrieved(jnp.asarray(embeddings), jnp.asarray(neighbours)),
                              frozen_encoders=True)
    method = RetrievalFinetune(
        backbone, self.sids, self.num_items, max_history=self.max_history,
        beam_size=self.beam_size, token_base=self.token_base, terms=(NLL(),),
        scorer=self.scorer, restrict_optimizer=functools.partial(train_decoder_only, plugin.base))
    train = self.config.train.copy_and_resolve_references()
    train.update(num_epochs=g.finetune_epochs, num_steps=g.finetune_steps, init_from='',
                 lr=g.finetune_lr or train.lr)
    return Phase(FINETUNE, method, train)

  def user_embeddings(self, params, history, batch_size: int = 256) -> np.ndarray:
    """[U, D] cached user embeddings: the ID encoder's mean state over each history's SID
    tokens (T5: encoder output; decoder-only: the LM's hidden states)."""
    base, bp = self.backbone.base, params['backbone']

    @jax.jit
    def mean_state(history):
      tokens = history_tokens(self.item_tokens, history)
      states = base.history_states(bp, tokens, None)
      mask = (tokens >= 0)[..., None]
      return jnp.sum(states * mask, 1) / jnp.maximum(mask.sum(1), 1)

    return np.concatenate([np.asarray(mean_state(history[i:i + batch_size]), np.float32)
                           for i in range(0, len(history), batch_size)])

  def retrieval(self, params, dataset, folder: str) -> tuple[np.ndarray, np.ndarray]:
    """(cached user embeddings [U, D], neighbours [U, keep]), computed once from these
    params and kept in folder/retrieval.npz (statistics in retrieval.json)."""
    path = os.path.join(folder, 'retrieval.npz')
    if os.path.exists(path):
      with np.load(path) as saved:
        return saved['embeddings'], saved['neighbours']
    g, start = self.settings, time.time()
    # The valid split's history = each user's last training items: no valid or test item.
    embeddings = self.user_embeddings(params, dataset.histories('valid')[0])
    neighbours, stats = retrieval_lib.neighbours(
        dataset, self.cf_user_vectors, embeddings, top=g.retrieval_top, keep=g.retrieval_keep,
        history=g.retrieval_history)
    check_no_leak(neighbours)
    os.makedirs(folder, exist_ok=True)
    np.savez(path + '.tmp.npz', embeddings=embeddings, neighbours=neighbours)
    os.replace(path + '.tmp.npz', path)
    stats['seconds'] = time.time() - start
    with open(os.path.join(folder, 'retrieval.json'), 'w') as f:
      json.dump(stats, f, indent=2)
    print(f'GENPLUGIN retrieval: {stats}', flush=True)
    return embeddings, neighbours


class RetrievalFinetune(GenerativeRecommender):
  """Phase 2: the decoder reads each user's retrieved neighbours' cached embeddings before
  the history, and trains with CE_id alone (terms=(NLL(),)); the encoders are frozen."""

  def prompt(self, batch):
    return Prompt(self.prompt_tokens(batch['history']), batch['user'])


def check_no_leak(neighbours: np.ndarray) -> None:
  """Raises if a user is their own neighbour (the retrieval's leak check; neighbours' valid
  and test items never enter: every vector and document reads training items only)."""
  users = np.arange(len(neighbours))[:, None]
  if np.any(neighbours == users):
    raise AssertionError(f'GENPLUGIN retrieval: {int(np.sum(neighbours == users))} users are '
                         'their own neighbours.')


def history_token_owner(item_tokens, history):
  """[B, H·L] the history item slot of each token of history_tokens(history) (-1: padding)."""
  tokens = item_tokens_of(item_tokens, history)  # [B, H, L]
  slots = jnp.broadcast_to(jnp.arange(history.shape[1])[None, :, None], tokens.shape)
  return compact(jnp.where(tokens >= 0, slots, -1).reshape(history.shape[0], -1), left=True)


def is_decoder_param(base, path) -> bool:
  """Whether the param at `path` of {'backbone', 'language'} trains in phase 2: T5's decoder
  (and an untied output layer); the decoder-only LM's layers, final norm and untied output
  layer. Never the language encoder, the ID encoder or the input embeddings."""
  names = [getattr(p, 'key', str(p)) for p in path]
  if names[0] != 'backbone':
    return False
  if isinstance(base, backbones.EncoderDecoderBackbone):
    return names[1] in ('decoder', 'lm_head')
  if isinstance(base, backbones.DecoderBackbone):
    return names[1] != 'embedder'
  raise ValueError(f'GENPLUGIN does not know the decoder params of {type(base).__name__}.')


def train_decoder_only(base, tx):
  """`tx` on the decoder params (is_decoder_param), zero updates and no state elsewhere."""
  labels = lambda params: jax.tree_util.tree_map_with_path(
      lambda path, _: 'decoder' if is_decoder_param(base, path) else 'frozen', params)
  return optax.partition({'decoder': tx, 'frozen': optax.set_to_zero()}, labels)


def build(config, dataset, inputs: BuildInputs = BuildInputs()):
  if inputs.embeddings is None:
    raise ValueError('genplugin: the language encoder needs the item vectors (config.embed).')
  base = BASES[config.genplugin.base].build(config, dataset, inputs)
  return GenPlugin(base, config, inputs.embeddings, inputs.user_vectors)
