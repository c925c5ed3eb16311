"""GenAIR (Li et al., WWW'26): archetype-grounded item representations for a sequential
recommender (genair.backbone: 'sasrec', 'bert4rec' or 'gru4rec').

  item table  frozen item vectors from the embed stage (`embed.source='npy'`: the LLM view
              of the archetypes, prompt ⊕ archetype hidden means PCA'd to 384 each, or their
              MiniLM view; see genrec_jax/embed/archetypes.py), [I, d_f]
  adapter     Linear(d_f -> genair.adapter_hidden) -> LayerNorm -> GELU -> Linear(-> hidden):
              the recommender's item vectors, at its input and output (the ID table is
              not used), as in the public code
  loss        the backbone's loss + α · L_cal, with the behavioural calibration
                L_cal = −(1/(N(N−1))) Σ_{i≠j} w_ij ||ê_i − ê_j||²
              over the N target items of the batch (ê: their adapted vectors, L2-normalised),
              w_ij = exp(−γ s_ij), s_ij = log1p(c_ij) / log1p(max c), c_ij = the number of
              users whose training sequence holds both i and j (w = 1 if they never
              co-occur); γ = genair.gamma (4), α = genair.alpha (1e-4).
The calibration is one Gram matrix: over the batch's targets, or over the catalogue with
each item weighted by its count among the targets when that is smaller (equal sums).

Differences from the public code (AI-Santiago/GenAIR): SASRec keeps its causal mask (the
public one has it commented out); L_cal is vectorised (the public one loops over pairs in
Python); both evaluation protocols are supported (the public code samples 100 negatives and
breaks score ties in the target's favour; ties count against it here).

  python -m genrec_jax.main --config=configs/genair_ins.py:cpu_sasrec --workdir=runs/genair
"""

from __future__ import annotations

import jax.numpy as jnp
import ml_collections
import numpy as np

from genrec_jax.losses import behavioural_calibration
from genrec_jax.methods import BuildInputs
from genrec_jax.methods import MethodSpec
from genrec_jax.methods import bert4rec
from genrec_jax.methods import gru4rec
from genrec_jax.methods import sasrec
from genrec_jax.methods import sequential

SPEC = MethodSpec(family='sequential', needs=('embeddings',))
BACKBONES = {'sasrec': sasrec, 'bert4rec': bert4rec, 'gru4rec': gru4rec}
MAX_DENSE_ITEMS = 20_000  # the co-occurrence weights are a dense [I, I] float32 matrix


def default_config(backbone: str = 'sasrec') -> ml_collections.ConfigDict:
  """GenAIR's fields on the given backbone (config files pass genair.backbone here)."""
  if backbone not in BACKBONES:
    raise ValueError(f'Invalid config.genair.backbone {backbone!r}: use one of '
                     f'{sorted(BACKBONES)}.')
  config = BACKBONES[backbone].default_config()
  config.update({
      'genair': dict(backbone=backbone,
                     adapter_hidden=0,  # 0: 2 x model.hidden (the public code; 256 at d=128)
                     calibration=True, gamma=4.0, alpha=1e-4),
      'embed': dict(source='npy'),
  })
  return config


def default_config_for(config) -> ml_collections.ConfigDict:
  return default_config(config.genair.backbone)


def validate_config(config) -> None:
  from genrec_jax.config import ConfigError  # pylint: disable=g-import-not-at-top (cycle)
  BACKBONES[config.genair.backbone].validate_config(config)
  g = config.genair
  if g.adapter_hidden < 0:
    raise ConfigError('Invalid config.genair.adapter_hidden: must be >= 0 (0 = 2 x hidden).')
  for field, value in (('gamma', g.gamma), ('alpha', g.alpha)):
    if value < 0:
      raise ConfigError(f'Invalid config.genair.{field}: must be >= 0 (paper: gamma 4, '
                        'alpha 1e-4).')


def cooccurrence_strength(dataset) -> np.ndarray:
  """s [I, I] float32: log1p(c_ij) / log1p(max c), c_ij = users whose training sequence
  (valid and test items left out) holds both i and j; the diagonal is 0."""
  if dataset.num_items > MAX_DENSE_ITEMS:
    raise ValueError(f'GenAIR calibration: {dataset.num_items} items need a dense '
                     f'{dataset.num_items}^2 weight matrix; more than {MAX_DENSE_ITEMS} '
                     'items is not supported (set genair.calibration=False).')
  counts = np.zeros((dataset.num_items, dataset.num_items), np.float32)
  chunk = 4096
  for start in range(0, dataset.num_users, chunk):
    users = range(start, min(start + chunk, dataset.num_users))
    x = np.zeros((len(users), dataset.num_items), np.float32)
    for row, u in enumerate(users):
      x[row, dataset.train_sequence(u)] = 1.0
    counts += x.T @ x  # exact: integer counts far below 2^24
  np.fill_diagonal(counts, 0.0)
  top = counts.max()
  return (np.log1p(counts) / np.log1p(top)).astype(np.float32) if top > 0 else counts


class Calibration:
  """α · L_cal over the batch's target items (a scalar term)."""

  name = 'calibration'

  def __init__(self, strength: np.ndarray, gamma: float, alpha: float):
    self.weights = jnp.asarray(np.exp(-gamma * strength), jnp.float32)  # [I, I]
    self.weight = alpha

  def __call__(self, out: sequential.SequentialOutputs):
    targets = out.targets.reshape(-1)
    valid = targets >= 0
    num_items = self.weights.shape[0]
    if targets.shape[0] < num_items:  # one row per target
      rows = jnp.maximum(targets, 0)
      value = behavioural_calibration(out.adapted[rows], self.weights[rows][:, rows],
                                      valid.astype(jnp.float32))
    else:  # one row per item, weighted by its count among the targets
      counts = jnp.zeros(num_items, jnp.float32).at[jnp.where(valid, targets, num_items)].add(
          1.0, mode='drop')
      value = behavioural_calibration(out.adapted, self.weights, counts)
    return value, {'calibration': value}


def build(config, dataset, inputs: BuildInputs = BuildInputs()):
  backbone = BACKBONES[config.genair.backbone]
  g = config.genair
  if inputs.embeddings is None:
    raise ValueError('GenAIR needs a frozen item table from the embed stage (embed.source).')
  hidden = g.adapter_hidden or 2 * config.model.hidden
  extra = ()
  if g.calibration:
    extra = (Calibration(cooccurrence_strength(dataset), g.gamma, g.alpha),)
  options = backbone.example_options(config) if hasattr(backbone, 'example_options') else None
  return sequential.build_recommender(
      config, backbone.encoder(config, dataset), frozen=inputs.embeddings,
      adapter=sequential.MLPAdapter(hidden), extra_terms=extra, example_options=options)
