"""Methods, chosen by name: `genrec_jax.methods.<name>` is the module of method `<name>`
(or a module registered with `register`, e.g. a method defined in a test or a project).

A method module declares

  SPEC = MethodSpec(family=..., needs=...)          # what it is and what it is built from
  default_config() -> ml_collections.ConfigDict     # its own fields (merged into the config)
  build(config, dataset, inputs: BuildInputs) -> Method
  default_config_for(config) -> ConfigDict          # optional: fields that depend on the
                                                    # config (LETTER's and Ghost's backbone)
  validate_config(config)                           # optional, raises ValueError

Families (declared, never guessed from config keys):
  'statistical'  fitted counts or draws, not trained (Pop, Random)
  'sequential'   history -> user state -> a score per item, exact top-k (SASRec, see
                 sequential.py; SimGR, whose user state and item vectors come from SID
                 tokens, see simgr.py)
  'generative'   history -> SID tokens, trie beam search (LC-Rec, TIGER, LETTER, Ghost and
                 the debiasing baselines; see generative.py). The config has `decode`, and
                 validation asks decode.beam_size >= max(eval.ks) and eval.mask_history off
                 (a beam over SIDs cannot leave out past items exactly).
`needs`: 'sids' runs the embed and tokenize stages first (BuildInputs.sids and .embeddings);
'embeddings' the embed stage only; 'user_vectors' reads the user vectors of the finished run
embed.cf_run, when set (BuildInputs.user_vectors: SASRec's user states over each user's
training items; GENPLUGIN's collaborative retrieval).

The `Method` built (subclass `Method` below: it holds the optional hooks' defaults):
  trainable: bool
  init(rng) -> params                               # fitted statistics for non-trainable ones
  loss_fn(params, batch, rng) -> (loss, metrics)    # trainable methods only
  predict_topk(params, batch, k) -> (items [B, k], scores [B, k])
  score_items(params, batch, items [B, C]) -> scores [B, C]   # for sampled evaluation
  train_dataset: Dataset | None                     # hook: the data to train on, if not the
                                                    # run's (augmentation)
  example_options: dict                             # hook: extra arguments of the training
                                                    # examples (BERT4Rec's mask_prob)
  restrict_optimizer(tx) -> tx                      # hook: train only part of the params
  tune_on_validation(params, dataset, eval_config)  # hook: a choice made after training on
      -> (valid metrics or None, results record)    # the validation split (IFairLRS-RR's λ)
  item_vectors(params) -> [I, d] or None            # hook: learned item vectors, for other
                                                    # runs' embed.cf_run (SASRec's)
  train_loss(params, batch, rng, epoch)             # hook: the loss the training loop
      -> (loss, metrics)                            # minimises; epoch = optimizer step / steps
                                                    # per epoch of this phase (float32 scalar,
                                                    # traced); default loss_fn (GENPLUGIN's
                                                    # substitution starts at an epoch)
  next_phase(params, dataset, workdir)              # hook: training that continues from this
      -> Phase | None                               # method's best params (GENPLUGIN's
                                                    # retrieval fine-tuning); see Phase

A batch is a dict of arrays: 'user' [B], 'history' [B, H] (left-padded with -1), 'target'
[B], and for ranking 'exclude' [B, E] (items never to recommend, -1 padded).
`predict_topk` never returns an item from 'exclude'; -1 marks an empty slot.
"""

from __future__ import annotations

import dataclasses
import importlib
import pkgutil
import types
from typing import Any

import jax
import numpy as np

FAMILIES = ('statistical', 'sequential', 'generative')
NEEDS = ('sids', 'embeddings', 'user_vectors')


@dataclasses.dataclass(frozen=True)
class MethodSpec:
  family: str
  needs: tuple[str, ...] = ()

  def __post_init__(self):
    if self.family not in FAMILIES or not set(self.needs) <= set(NEEDS):
      raise ValueError(f'MethodSpec{self.family, self.needs}: family must be one of '
                       f'{FAMILIES}, needs a subset of {NEEDS}.')


@dataclasses.dataclass(frozen=True)
class BuildInputs:
  """What `build` receives besides the config and dataset (per the module's SPEC.needs)."""
  sids: Any = None  # tokenize.sid_table.SIDTable
  embeddings: np.ndarray | None = None  # [I, d] item vectors of the embed stage
  user_vectors: np.ndarray | None = None  # [U, d] user vectors of the run embed.cf_run
  distractors: np.ndarray | None = None  # [I, K_b] AUO's given distractors (config.ghost)


@dataclasses.dataclass(frozen=True)
class Phase:
  """A training phase after a method's own (its `next_phase` hook returns it): `method`
  trains with `train` as config.train, starting from the previous phase's best params, in
  workdir/<name>/ (its own checkpoints, metrics.jsonl, TensorBoard events). A resumed or
  eval-only run walks the phases again from the saved params, so next_phase must give the
  same phase for the same params (cache what it computes under workdir/<name>/). The last
  phase's method and best params are the run's."""
  name: str
  method: Any  # Method
  train: Any  # ml_collections.ConfigDict


class Method:
  """Base of every method: the contract above, with the optional hooks' defaults."""

  trainable: bool = True
  train_dataset = None  # None: train on the run's dataset
  example_options: dict = {}  # keyword arguments of data.pipeline.train_iterator

  def restrict_optimizer(self, tx):
    return tx

  def tune_on_validation(self, params, dataset, eval_config) -> tuple[dict | None, dict]:
    del params, dataset, eval_config
    return None, {}

  def item_vectors(self, params) -> jax.Array | None:
    del params
    return None

  def train_loss(self, params, batch: dict, rng: jax.Array,
                 epoch: jax.Array) -> tuple[jax.Array, dict]:
    del epoch
    return self.loss_fn(params, batch, rng)

  def next_phase(self, params, dataset, workdir: str) -> Phase | None:
    del params, dataset, workdir
    return None

  def init(self, rng: jax.Array) -> Any:
    raise NotImplementedError

  def loss_fn(self, params, batch: dict, rng: jax.Array) -> tuple[jax.Array, dict]:
    raise NotImplementedError(f'{type(self).__name__} is not trainable')

  def predict_topk(self, params, batch: dict, k: int) -> tuple[jax.Array, jax.Array]:
    raise NotImplementedError

  def score_items(self, params, batch: dict, items: jax.Array) -> jax.Array:
    raise NotImplementedError


_REGISTERED: dict[str, types.ModuleType] = {}


def register(name: str, module: types.ModuleType | Any) -> None:
  """Makes `module` (anything with SPEC, default_config and build) the method `name`."""
  _check_module(name, module)
  _REGISTERED[name] = module


def available() -> list[str]:
  """Method names: the public modules here that declare a SPEC (not the shared parts such as
  backbones, loss terms and instructions), and the registered ones."""
  names = (m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith('_'))
  own = [n for n in names if hasattr(importlib.import_module(f'{__name__}.{n}'), 'SPEC')]
  return sorted({*own, *_REGISTERED})


def get(name: str):
  """The module of method `name`."""
  if name in _REGISTERED:
    return _REGISTERED[name]
  if name not in available():
    raise ValueError(f'unknown method {name!r}; available: {available()}')
  return importlib.import_module(f'{__name__}.{name}')


def spec(name: str) -> MethodSpec:
  return get(name).SPEC


def _check_module(name, module) -> None:
  missing = [a for a in ('SPEC', 'default_config', 'build') if not hasattr(module, a)]
  if missing:
    raise ValueError(f'method {name!r} lacks {missing}; see genrec_jax.methods.')
