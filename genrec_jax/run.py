"""train_and_evaluate(config, workdir): one run from config to results table.

Stages: validate the config -> write config.json -> load (or build and cache) the dataset
-> build the method named by config.method -> fit (or load the best checkpoint for
eval-only runs) -> evaluate each split -> write metrics.jsonl, results.json and results.md
into the workdir.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from typing import Any, NamedTuple

from absl import logging
import jax
import ml_collections
import numpy as np

from genrec_jax import config as config_lib
from genrec_jax import methods
from genrec_jax.config import ConfigError
from genrec_jax.data.load import load_dataset
from genrec_jax.embed.cache import item_embeddings
from genrec_jax.eval.evaluate import check_negatives
from genrec_jax.eval.evaluate import evaluate
from genrec_jax.eval.evaluate import protocol_description
from genrec_jax.report import tables
from genrec_jax.tokenize.build import build_sids
from genrec_jax.tokenize.stats import describe as describe_sids
from genrec_jax.train import loop
from genrec_jax.train.writer import MetricWriter


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str,
                       eval_only: bool = False, tokenize_only: bool = False) -> dict:
  """Runs `config` in `workdir` and returns the results dict written to results.json.

  eval_only: evaluate the best checkpoint already in `workdir` instead of training.
  tokenize_only: stop after building (and printing the statistics of) the SIDs.
  """
  # ---------------------------------------------------------------------------- config --
  config_lib.validate(config)
  if os.path.exists(workdir) and not os.path.isdir(workdir):
    raise WorkdirError(f'--workdir={workdir} is a file, not a directory; pick another path.')
  os.makedirs(workdir, exist_ok=True)
  check_same_config(config, workdir, eval_only=eval_only)
  is_writer = jax.process_index() == 0
  if is_writer and not eval_only:
    with open(os.path.join(workdir, 'config.json'), 'w') as f:
      f.write(config.to_json_best_effort(indent=2))

  # ------------------------------------------------------------------------------ data --
  dataset = load_dataset(config.data, workdir)
  if config.eval.protocol == 'sampled':  # fail now, not at the first validation
    check_negatives(dataset, config.eval.num_negatives)

  # ----------------------------------------------------------- SIDs, then the method --
  if tokenize_only:
    return {'sids': item_sids(config, dataset, workdir)[1]}
  method = build_method(config, dataset, workdir)
  writer = MetricWriter(workdir)

  # ------------------------------------------------------------------------- train/fit --
  train_dir, phase_seconds = workdir, {}  # train_dir: the last training phase's workdir
  if not method.trainable:
    params = method.init(jax.random.PRNGKey(config.seed))
  elif eval_only:
    params = best_params(config, method, workdir, '--mode=eval')
    method, params, train_dir = later_phases(config, method, dataset, workdir, params)
  else:
    method, params, train_dir, phase_seconds = fit_phases(config, method, dataset, workdir,
                                                          writer)

  # ------------------------------------------------------------------------ evaluation --
  protocol = protocol_description(config.eval)
  logging.info('Evaluating %s on %s (%s)', config.name, dataset.name, protocol)
  splits = {}
  # A choice some methods make after training on valid (IFairLRS-RR's λ), kept for test.
  tuned_valid, extra = method.tune_on_validation(params, dataset, config.eval)
  if tuned_valid is not None and 'valid' in config.eval.splits:
    splits['valid'] = tuned_valid
  for split in config.eval.splits:
    if split == 'valid' and method.trainable and split not in splits:  # best params' valid
      splits[split] = loop.best_validation_metrics(train_dir, config.eval.ks)
    if not splits.get(split):
      splits[split] = evaluate(method, params, dataset, split, config.eval, config.seed)
    writer.write(-1, f'final_{split}', splits[split])
  writer.close()

  # --------------------------------------------------------------------------- results --
  results = {'name': config.name, 'method': config.method, 'seed': config.seed,
             'dataset': dataset.name, 'statistics': dataset.statistics(),
             'protocol': protocol, 'splits': splits, **extra}
  if len(phase_seconds) > 1:  # methods that train in phases: the time each took here
    results['phase_seconds'] = phase_seconds
  if is_writer:
    write_results(results, config.eval.ks, workdir)
  return results


def fit_phases(config, method, dataset, workdir: str, writer):
  """Trains `method` in `workdir`, then each Phase its next_phase hook hands on, in
  workdir/<phase name>/ from the previous phase's best params (methods.Phase).

  Returns (the last phase's method, its params, its workdir, {phase: seconds this process
  spent on it; '<name> setup' is its next_phase call, e.g. GENPLUGIN's retrieval}).
  """
  def validate(method):
    return lambda p: evaluate(method, p, dataset, 'valid', config.eval, config.seed)
  start = time.time()
  params = loop.fit(config, method, dataset, workdir, validate_fn=validate(method),
                    writer=writer)
  seconds = {'train': time.time() - start}
  while True:
    start = time.time()
    phase = method.next_phase(params, dataset, workdir)
    if phase is None:
      return method, params, workdir, seconds
    seconds[f'{phase.name} setup'] = time.time() - start
    method, workdir = phase.method, os.path.join(workdir, phase.name)
    phase_config = config.copy_and_resolve_references()
    phase_config.train = phase.train
    phase_writer = MetricWriter(workdir)
    start = time.time()
    params = loop.fit(phase_config, method, dataset, workdir, validate_fn=validate(method),
                      writer=phase_writer, init_params=params)
    phase_writer.close()
    seconds[phase.name] = time.time() - start


def later_phases(config, method, dataset, workdir: str, params):
  """(method, best params, workdir) of a trained run's last phase, walking the phases
  (Method.next_phase) from its first phase's best params `params`."""
  while (phase := method.next_phase(params, dataset, workdir)) is not None:
    method, workdir = phase.method, os.path.join(workdir, phase.name)
    params = best_params(config, method, workdir, workdir)
  return method, params, workdir


class WorkdirError(ValueError):
  """The workdir cannot be used as asked. The message names the field and the fix."""


# Fields that change no number of a run, so a resumed run may set them differently.
_FREE_FIELDS = ('name', 'train.log_every', 'data.tfds_dir')
# Fields an eval-only run may change: they act after training (issue: ablations from a
# checkpoint). Everything else must match the run that trained the checkpoint.
_EVAL_FIELDS = ('eval.', 'decode.')


def check_same_config(config: ml_collections.ConfigDict, workdir: str,
                      eval_only: bool = False) -> None:
  """Refuses a workdir whose saved config.json differs in a field that changes numbers."""
  path = os.path.join(workdir, 'config.json')
  if not os.path.exists(path):
    return
  try:
    with open(path) as f:
      saved = _flatten(json.load(f))
  except (OSError, json.JSONDecodeError) as e:
    raise WorkdirError(f'{path} is not readable JSON ({e}); the run that wrote it was cut '
                       'short. Delete the workdir or use a new one.') from None
  given = _flatten(json.loads(config.to_json_best_effort()))
  free = _FREE_FIELDS + (_EVAL_FIELDS if eval_only else ())
  differ = sorted(k for k in set(saved) | set(given)
                  if saved.get(k, '<unset>') != given.get(k, '<unset>')
                  and not any(k == f or (f.endswith('.') and k.startswith(f)) for f in free))
  if differ:
    shown = '; '.join(f'{k}={saved.get(k, "<unset>")!r} there, {given.get(k, "<unset>")!r} '
                      'now' for k in differ[:5])
    more = f' (and {len(differ) - 5} more)' if len(differ) > 5 else ''
    raise WorkdirError(f'{workdir} was run with another config: {shown}{more}. Use a new '
                       'workdir, or the same settings to resume it.')


def _flatten(tree: dict, prefix: str = '') -> dict:
  flat = {}
  for key, value in tree.items():
    if isinstance(value, dict):
      flat.update(_flatten(value, f'{prefix}{key}.'))
    else:
      flat[f'{prefix}{key}'] = value
  return flat


def item_sids(config: ml_collections.ConfigDict, dataset, workdir: str):
  """(item embeddings, SIDs) of `config` on `dataset`, built once and then read from the
  workdir's caches; prints the SID statistics."""
  cf = cf_vectors(config, dataset)
  embeddings = item_embeddings(config.embed, dataset, workdir, cf_vectors=cf)
  sids = build_sids(config.tokenize, dataset, embeddings, config.seed, workdir,
                    cf_embeddings=cf)
  print(describe_sids(sids, dataset.is_head))
  return embeddings, sids


def build_method(config: ml_collections.ConfigDict, dataset, workdir: str):
  """The method named by config.method on `dataset`, with what its SPEC needs."""
  module = methods.get(config.method)
  inputs = methods.BuildInputs()
  if 'sids' in module.SPEC.needs:
    embeddings, sids = item_sids(config, dataset, workdir)
    inputs = methods.BuildInputs(sids=sids, embeddings=embeddings)
  elif 'embeddings' in module.SPEC.needs:
    inputs = methods.BuildInputs(embeddings=item_embeddings(
        config.embed, dataset, workdir, cf_vectors=cf_vectors(config, dataset)))
  if 'user_vectors' in module.SPEC.needs and config.embed.cf_run:
    inputs = dataclasses.replace(inputs,
                                 user_vectors=run_user_vectors(config.embed.cf_run, dataset))
  return module.build(config, dataset, inputs)


class LoadedRun(NamedTuple):
  config: ml_collections.ConfigDict
  dataset: Any
  method: Any
  params: Any


def load_run(workdir: str, config: ml_collections.ConfigDict | None = None,
             dataset=None, phases: bool = True) -> LoadedRun:
  """A finished run: its config (config.json unless given), dataset (unless given; from the
  workdir's cache), method (SIDs from the workdir's cache) and best params; of its last
  training phase (methods.Phase), or with phases=False of the method's own training."""
  if config is None:
    path = os.path.join(workdir, 'config.json')
    if not os.path.exists(path):
      raise WorkdirError(f'{workdir} has no config.json: not a run directory. Point at a '
                         'finished run (its --workdir).')
    try:
      with open(path) as f:
        config = ml_collections.ConfigDict(json.load(f))
    except json.JSONDecodeError as e:
      raise WorkdirError(f'{path} is not readable JSON ({e}); the run that wrote it was cut '
                         'short.') from None
  if dataset is None:
    dataset = load_dataset(config.data, workdir)
  method = build_method(config, dataset, workdir)
  params = (method.init(jax.random.PRNGKey(config.seed)) if not method.trainable
            else best_params(config, method, workdir, workdir))
  if method.trainable and phases:
    method, params, _ = later_phases(config, method, dataset, workdir, params)
  return LoadedRun(config, dataset, method, params)


def best_params(config, method, workdir: str, asked_by: str):
  if not os.path.isdir(os.path.join(workdir, 'checkpoints')):
    raise WorkdirError(f'{asked_by} needs a trained run: {workdir} has no checkpoints/. '
                       'Train it first (--mode=train), or point at a finished run.')
  return loop.load_best_params(config, method, workdir)


def cf_vectors(config: ml_collections.ConfigDict, dataset) -> np.ndarray | None:
  """The item vectors of embed.cf_run when a stage reads them (LETTER SIDs, source='run')."""
  if config.tokenize.method == 'letter' or config.embed.source == 'run':
    return run_item_vectors(config.embed.cf_run, dataset)
  return None


def run_item_vectors(run_dir: str, dataset) -> np.ndarray:
  """[I, d] learned item vectors of the finished run in `run_dir` (embed.cf_run)."""
  run = load_run(run_dir, dataset=dataset)
  vectors = run.method.item_vectors(run.params)
  if vectors is None:
    raise ConfigError(f'embed.cf_run={run_dir}: method {run.config.method} learns no item '
                      'vectors; use a SASRec run.')
  vectors = np.asarray(vectors, np.float32)
  if vectors.shape[0] != dataset.num_items:
    raise ConfigError(f'embed.cf_run={run_dir}: {vectors.shape[0]} item vectors but the '
                      f'dataset has {dataset.num_items} items; use a run on the same data.')
  return vectors


def run_user_vectors(run_dir: str, dataset, batch_size: int = 256) -> np.ndarray:
  """[U, d] user vectors of the finished run in `run_dir` (embed.cf_run): its user state
  after each user's training items (the valid split's history, so never a valid or test
  item)."""
  run = load_run(run_dir, dataset=dataset)
  if not hasattr(run.method, 'user_states'):
    raise ConfigError(f'embed.cf_run={run_dir}: method {run.config.method} has no user '
                      'states; use a SASRec run.')
  if run.dataset.num_users != dataset.num_users:
    raise ConfigError(f'embed.cf_run={run_dir}: {run.dataset.num_users} users but the '
                      f'dataset has {dataset.num_users}; use a run on the same data.')
  history = dataset.histories('valid')[0]
  states = jax.jit(run.method.user_states)
  return np.concatenate([np.asarray(states(run.params, history[i:i + batch_size]), np.float32)
                         for i in range(0, len(history), batch_size)])


def write_results(results: dict, ks, workdir: str) -> str:
  with open(os.path.join(workdir, 'results.json'), 'w') as f:
    json.dump(results, f, indent=2)
  parts = [f"# {results['name']} on {results['dataset']} (seed {results['seed']})",
           f"Protocol: {results['protocol']}."]
  for split, metrics in results['splits'].items():
    parts += [f'## {split}', tables.run_table(metrics, ks)]
  text = '\n\n'.join(parts) + '\n'
  with open(os.path.join(workdir, 'results.md'), 'w') as f:
    f.write(text)
  print(text)
  return text
