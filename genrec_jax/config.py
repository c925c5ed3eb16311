"""The fields every run has, dataset presets, and validation before any work starts.

A config file in `configs/` calls `base_config(method, dataset)` and changes what it needs.
The method module (chosen by name, see `genrec_jax.methods`) adds its own fields with
`default_config()`; `validate` then rejects any key that neither the common fields nor the
method know (typos in config files or in `--config.a.b=v` overrides fail loudly) and any
invalid value, naming the field and the fix.
"""

from __future__ import annotations

import difflib
import json

import ml_collections

from genrec_jax import methods
from genrec_jax.data import pipeline
from genrec_jax.data.readers import READERS
from genrec_jax.embed.cache import default_embed_config
from genrec_jax.tokenize.build import default_tokenize_config
from genrec_jax.tokenize.build import validate_tokenize_config
from genrec_jax.train.sharding import default_sharding_config
from genrec_jax.train.state import default_train_config

# Dataset presets: the `data` fields each dataset name sets.
DATASETS = {
    'ml-100k': dict(source='movielens100k', category=''),
    'synthetic': dict(source='synthetic', category=''),
    'amazon2018-instruments': dict(source='amazon2018', category='Musical_Instruments'),
    'amazon2018-arts': dict(source='amazon2018', category='Arts_Crafts_and_Sewing'),
    'amazon2018-games': dict(source='amazon2018', category='Video_Games'),
    'amazon2014-beauty': dict(source='amazon2014', category='Beauty'),
    'amazon2014-sports': dict(source='amazon2014', category='Sports_and_Outdoors'),
    'amazon2014-toys': dict(source='amazon2014', category='Toys_and_Games'),
    # The papers' own Instruments data in the LC-Rec / LETTER format (no item text).
    'instruments-lcrec': dict(source='lcrec', category='Instruments',
                              dir='../shared/data/amazon18/Instruments'),
}

SOURCES = (*READERS, 'synthetic')  # the raw-file readers and the generator


def base_config(method: str, dataset: str,
                method_defaults: ml_collections.ConfigDict | None = None
                ) -> ml_collections.ConfigDict:
  """Common fields with the dataset preset applied and the method's defaults merged in
  (`method_defaults`, or the method module's default_config())."""
  if dataset not in DATASETS:
    raise ValueError(f'Unknown dataset {dataset!r}; known: {sorted(DATASETS)}.')
  config = ml_collections.ConfigDict()
  config.method = method
  config.name = f'{method}_{dataset}'  # row label in reports; seeds of one name are pooled
  config.seed = 0

  config.data = ml_collections.ConfigDict()
  config.data.name = dataset
  config.data.source = DATASETS[dataset]['source']
  config.data.category = DATASETS[dataset]['category']  # Amazon category / RecBole name
  config.data.dir = DATASETS[dataset].get('dir', '')  # raw files; '' = the source's default
  #                                                    (ml-100k: inside the recbole wheel)
  config.data.tfds_dir = ''  # raw-data TFDS cache; '' = $GENREC_TFDS_DIR or ~/tensorflow_datasets
  config.data.on_bad_line = 'error'  # or 'skip' (skipped records are counted and logged)
  config.data.dedup = True
  config.data.kcore = 5
  config.data.max_history = 20
  config.data.head_ratio = 0.2
  config.data.num_groups = 5
  config.data.synthetic = ml_collections.ConfigDict(dict(
      num_users=500, num_items=300, mean_length=12, min_length=5, num_topics=8,
      zipf_exponent=1.1, topic_stickiness=0.7))

  config.eval = ml_collections.ConfigDict()
  config.eval.protocol = 'full'  # 'full' ranking or 'sampled' (1 positive + N negatives)
  config.eval.num_negatives = 100
  config.eval.ks = (1, 5, 10, 20)
  config.eval.mask_history = False  # exclude the user's past items from the ranking
  config.eval.batch_size = 256
  config.eval.splits = ('valid', 'test')

  config.embed = default_embed_config()
  config.tokenize = default_tokenize_config()
  config.train = default_train_config()
  config.sharding = default_sharding_config()

  config.update(method_defaults if method_defaults is not None
                else methods.get(method).default_config())
  return config


def load_config_file(spec: str) -> ml_collections.ConfigDict:
  """'configs/x.py[:variant]' -> its get_config(variant), read as `--config=` reads it."""
  path, _, variant = spec.partition(':')
  namespace = {}
  with open(path) as f:
    exec(compile(f.read(), path, 'exec'), namespace)  # pylint: disable=exec-used
  return namespace['get_config'](variant) if variant else namespace['get_config']()


class ConfigError(ValueError):
  """A config key or value is wrong. The message names the field and the fix."""


def reference(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """Every field config.method's runs have, at its default."""
  module = methods.get(config.method)
  # A method whose fields depend on the config (e.g. LETTER's backbone) says which it expects.
  defaults = module.default_config_for(config) if hasattr(module, 'default_config_for') else None
  return base_config(config.method, 'synthetic', defaults)


# Fields renamed since runs were first saved (old dotted name -> new), so that older workdirs
# can still be resumed and evaluated. embed.run_dir and tokenize.cf_run became one field.
RENAMED_FIELDS = {'model.hf_dir': 'model.checkpoint', 'embed.run_dir': 'embed.cf_run',
                  'tokenize.cf_run': 'embed.cf_run'}


def read_saved(path: str) -> ml_collections.ConfigDict:
  """A run's config.json in today's fields: renamed ones under their new names, and fields
  added since the run at their defaults (a new field defaults to the behaviour before it).
  Raises OSError or json.JSONDecodeError for an unreadable file."""
  with open(path) as f:
    saved = json.load(f)
  values = {}
  for key, value in flatten(saved).items():
    new = RENAMED_FIELDS.get(key, key)
    if new != key and value in ('', None):  # an unset old field: the new one's default
      continue
    if new in values and values[new] != value:
      raise ConfigError(f'{path}: {key}={value!r} and another field read as {new} '
                        f'({values[new]!r}) disagree; set {new} in the file by hand.')
    values[new] = value
  try:
    config = reference(ml_collections.ConfigDict(saved))
  except AttributeError:  # a field the method's defaults read was added later: its default
    config = base_config(saved['method'], 'synthetic')
  for key, value in values.items():
    try:
      set_field(config, key, value)
    except TypeError as e:
      raise ConfigError(f'{path}: field {key}={value!r} no longer fits its type ({e}).') from None
  return config


def set_field(config: ml_collections.ConfigDict, key: str, value) -> None:
  """config.<key> = value for a dotted key ('decode.beam_size'), adding missing parents."""
  *parents, leaf = key.split('.')
  node = config
  for parent in parents:
    if parent not in node:
      node[parent] = ml_collections.ConfigDict()
    node = node[parent]
  node[leaf] = value


def validate(config: ml_collections.ConfigDict) -> None:
  """Raises ConfigError naming the field and the fix for unknown keys or invalid values."""
  try:
    module = methods.get(config.method)
  except ValueError as e:
    raise ConfigError(f'config.method: {e}') from None
  _check_keys(config.to_dict(), reference(config).to_dict(), 'config')

  data, ev = config.data, config.eval
  _require(data.source in SOURCES, 'data.source', f'must be one of {SOURCES}')
  _require(data.on_bad_line in ('error', 'skip'), 'data.on_bad_line', "use 'error' or 'skip'")
  _require(data.kcore >= 1, 'data.kcore', 'must be >= 1')
  _require(data.max_history >= 1, 'data.max_history', 'must be >= 1')
  _require(0 < data.head_ratio < 1, 'data.head_ratio', 'must be in (0, 1), e.g. 0.2')
  _require(data.num_groups >= 2, 'data.num_groups', 'must be >= 2')
  _require(ev.protocol in ('full', 'sampled'), 'eval.protocol', "use 'full' or 'sampled'")
  _require(ev.num_negatives >= 1, 'eval.num_negatives', 'must be >= 1')
  _require(len(ev.ks) > 0 and all(int(k) >= 1 for k in ev.ks), 'eval.ks',
           'must be a non-empty tuple of positive ints')
  _require(ev.batch_size >= 1, 'eval.batch_size', 'must be >= 1')
  _require(set(ev.splits) <= {'valid', 'test'} and ev.splits, 'eval.splits',
           "use a subset of ('valid', 'test')")
  validate_tokenize_config(config.tokenize)
  _require(config.embed.cf_run or not (config.tokenize.method == 'letter' or
                                       config.embed.source == 'run'),
           'embed.cf_run', 'LETTER SIDs and embed.source=run read the item vectors of a '
           'finished SASRec run on the same dataset: set it to that run\'s workdir (e.g. '
           'runs/sasrec)')
  model = config.get('model', {})
  if 'dropout' in model:
    _require(0 <= model.dropout < 1, 'model.dropout', 'must be in [0, 1), e.g. 0.1')
  for field, value in model.items():
    if isinstance(value, int) and not isinstance(value, bool) and (
        field.startswith('num_') or field in ('hidden', 'hidden_size', 'intermediate_size',
                                              'd_model', 'd_ff', 'head_dim')):
      _require(value >= 1, f'model.{field}', 'must be >= 1')
  if module.SPEC.family == 'generative':
    top = max(int(k) for k in ev.ks)
    _require(config.decode.beam_size >= top, 'decode.beam_size',
             f'must be >= max(eval.ks) = {top}: the beam holds every item ranked (set '
             f'decode.beam_size={top}, or lower eval.ks)')
    _require(not ev.mask_history, 'eval.mask_history',
             'generative methods decode with a trie beam search and cannot leave out past '
             'items exactly; set it to False')
  tc = config.train
  _require(tc.batch_size >= 1, 'train.batch_size', 'must be >= 1')
  _require(tc.num_epochs >= 1 or tc.num_steps >= 1, 'train.num_epochs',
           'set num_epochs or num_steps >= 1')
  _require(tc.lr > 0, 'train.lr', 'must be > 0')
  _require(tc.grad_accum_steps >= 1, 'train.grad_accum_steps', 'must be >= 1')
  _require(tc.log_every >= 1, 'train.log_every', 'must be >= 1')
  _require(tc.example_kind in pipeline.KINDS, 'train.example_kind',
           f'use one of {pipeline.KINDS}')
  _require(tc.targets_per_chunk >= 1, 'train.targets_per_chunk', 'must be >= 1')
  if hasattr(module, 'validate_config'):
    module.validate_config(config)


def flatten(config: ml_collections.ConfigDict | dict) -> dict:
  """{'train.lr': 0.001, ...}: every leaf by its dotted key, values as config.json holds them."""
  tree = json.loads(config.to_json_best_effort()) if hasattr(config, 'to_json_best_effort') else config
  flat = {}
  for key, value in tree.items():
    if isinstance(value, dict):
      flat.update({f'{key}.{k}': v for k, v in flatten(value).items()})
    else:
      flat[key] = value
  return flat


def check_override(config: ml_collections.ConfigDict, key: str) -> None:
  """Raises ConfigError (with a "did you mean") if the dotted `key` of a command-line
  override (--config.train.lr=...) is not a field of `config`."""
  *parents, leaf = key.split('.')
  given = {leaf: None}
  for parent in reversed(parents):
    given = {parent: given}
  _check_keys(given, config.to_dict(), 'config')


def _check_keys(given: dict, known: dict, path: str) -> None:
  for key, value in given.items():
    if key not in known:
      initials = ''.join(word[:1] for word in key.split('_'))  # learning_rate -> lr
      close = difflib.get_close_matches(key, list(known), n=1) or (
          [initials] if initials in known and '_' in key else [])
      hint = f' Did you mean {path}.{close[0]}?' if close else ''
      raise ConfigError(f'Unknown config key {path}.{key}.{hint} Known keys under {path}: '
                       f'{sorted(known)}.')
    if isinstance(value, dict) and isinstance(known[key], dict):
      _check_keys(value, known[key], f'{path}.{key}')


def _require(ok: bool, field: str, fix: str) -> None:
  if not ok:
    raise ConfigError(f'Invalid config.{field}: {fix}.')
