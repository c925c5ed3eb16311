"""train_and_evaluate(config, workdir): one run from config to results table.

Stages: validate the config -> write config.json -> load (or build and cache) the dataset
-> build the method named by config.method -> fit (or load the best checkpoint for
eval-only runs) -> evaluate each split -> write metrics.jsonl, results.json and results.md
into the workdir, and print one headline line.

An eval-only run evaluates a trained run's best checkpoint, possibly with other eval.* and
decode.* settings (ablations without retraining), and writes into its own directory (`out`,
default <workdir>/eval): the trained run's results are never overwritten, and its results
name the checkpoint and the changed settings.
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
from genrec_jax import progress
from genrec_jax.config import ConfigError
from genrec_jax.data.dataset import prefix_histories
from genrec_jax.data.load import load_dataset
from genrec_jax.embed.cache import item_embeddings
from genrec_jax.eval.evaluate import check_negatives
from genrec_jax.eval.evaluate import evaluate
from genrec_jax.eval.evaluate import protocol_description
from genrec_jax.methods.ghost import ranked_above
from genrec_jax.models import pretrained
from genrec_jax.report import tables
from genrec_jax.tokenize.build import build_sids
from genrec_jax.tokenize.stats import describe as describe_sids
from genrec_jax.train import loop
from genrec_jax.train.writer import MetricWriter


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str,
                       eval_only: bool = False, tokenize_only: bool = False,
                       out: str | None = None) -> dict:
  """Runs `config` in `workdir` and returns the results dict written to results.json.

  eval_only: evaluate the best checkpoint already in `workdir` instead of training, writing
    the results into `out` (default <workdir>/eval), never into `workdir`.
  tokenize_only: stop after building (and printing the statistics of) the SIDs.
  """
  start = time.time()
  # ---------------------------------------------------------------------------- config --
  config_lib.validate(config)
  if config.get('model', {}).get('checkpoint'):  # missing weights are named before any work
    pretrained.path_of(config.model.checkpoint)
  if os.path.exists(workdir) and not os.path.isdir(workdir):
    raise WorkdirError(f'--workdir={workdir} is a file, not a directory; pick another path.')
  os.makedirs(workdir, exist_ok=True)
  check_same_config(config, workdir, eval_only=eval_only)
  results_dir = workdir
  if eval_only:
    results_dir = out or os.path.join(workdir, 'eval')
    if os.path.abspath(results_dir) == os.path.abspath(workdir):
      raise WorkdirError(f'--out={out}: an evaluation never writes into the trained run; '
                         'pass another directory, e.g. --out=<workdir>/ablations/<name>.')
    os.makedirs(results_dir, exist_ok=True)
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
  writer = MetricWriter(results_dir)

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
  # Training's validation of the best params serves as the valid split, unless an eval-only
  # run changed an eval/decode setting (another beam, another protocol): that reaches every
  # split it reports.
  changed = eval_changes(config, workdir) if eval_only else {}
  for split in config.eval.splits:
    if split == 'valid' and method.trainable and not changed and split not in splits:
      splits[split] = loop.best_validation_metrics(train_dir, config.eval.ks)
    if not splits.get(split):
      splits[split] = evaluate(method, params, dataset, split, config.eval, config.seed)
    writer.write(-1, f'final_{split}', splits[split])
  writer.close()

  # --------------------------------------------------------------------------- results --
  results = {'name': config.name, 'method': config.method, 'seed': config.seed,
             'dataset': dataset.name, 'statistics': dataset.statistics(),
             'protocol': protocol, 'splits': splits, **extra}
  if method.trainable:
    results['num_params'] = loop.num_params(params)
  if len(phase_seconds) > 1:  # methods that train in phases: the time each took here
    results['phase_seconds'] = phase_seconds
  if eval_only:
    results['name'] = (f'{config.name} [{", ".join(f"{k}={v}" for k, v in changed.items())}]'
                       if changed else f'{config.name} [re-evaluated]')
    results['evaluated'] = {'run': os.path.abspath(workdir), 'changed': changed,
                            'checkpoint_step': loop.best_step(train_dir)}
  if is_writer:
    write_results(results, config.eval.ks, results_dir)
    print(headline(results, config.eval.ks, time.time() - start, results_dir))
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


# Fields that change no number of a run, so a resumed run may set them differently
# (checkpoints carry the data position, so their frequency is one).
_FREE_FIELDS = ('name', 'train.log_every', 'train.checkpoint_every', 'data.tfds_dir')
# Fields an eval-only run may change: they act after training (issue: ablations from a
# checkpoint). Everything else must match the run that trained the checkpoint.
_EVAL_FIELDS = ('eval.', 'decode.')


def check_same_config(config: ml_collections.ConfigDict, workdir: str,
                      eval_only: bool = False) -> None:
  """Refuses a workdir whose saved config.json differs in a field that changes numbers."""
  path = os.path.join(workdir, 'config.json')
  if not os.path.exists(path):
    return
  saved = config_lib.flatten(saved_config(path))
  given = config_lib.flatten(config)
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


def eval_changes(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """{field: value} of the eval.* and decode.* settings that differ from the trained run's."""
  saved = config_lib.flatten(saved_config(os.path.join(workdir, 'config.json')))
  given = config_lib.flatten(config)
  return {k: given[k] for k in sorted(given)
          if k.startswith(_EVAL_FIELDS) and saved.get(k, '<unset>') != given[k]}


def saved_config(path: str) -> ml_collections.ConfigDict:
  """A run's config.json, in today's fields (config.read_saved)."""
  try:
    return config_lib.read_saved(path)
  except (OSError, json.JSONDecodeError) as e:
    raise WorkdirError(f'{path} is not readable JSON ({e}); the run that wrote it was cut '
                       'short. Delete the workdir or use a new one.') from None
  except (ValueError, AttributeError) as e:  # e.g. no or an unknown method
    raise WorkdirError(f'{path} is not a run config this version reads: {e}') from None


def item_vectors(config: ml_collections.ConfigDict, dataset, workdir: str,
                 cf: np.ndarray | None = None) -> np.ndarray:
  """[I, d] item vectors of the embed stage, built once and then read from the workdir's
  cache. cf: cf_vectors(config, dataset), where the caller has read it already."""
  if cf is None:
    cf = cf_vectors(config, dataset)
  return item_embeddings(config.embed, dataset, workdir, cf_vectors=cf)


def item_sids(config: ml_collections.ConfigDict, dataset, workdir: str):
  """(item embeddings, SIDs) of `config` on `dataset`, built once and then read from the
  workdir's caches; prints the SID statistics."""
  cf = cf_vectors(config, dataset)  # once: both stages may read the collaborative run
  embeddings = item_vectors(config, dataset, workdir, cf)
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
    inputs = methods.BuildInputs(embeddings=item_vectors(config, dataset, workdir))
  if 'user_vectors' in module.SPEC.needs and config.embed.cf_run:
    inputs = dataclasses.replace(inputs,
                                 user_vectors=run_user_vectors(config.embed.cf_run, dataset))
  ghost = config.get('ghost', {})  # AUO's distractors, where given (only AUO reads them)
  if ghost.get('auo') and ghost.get('distractors_npy'):
    inputs = dataclasses.replace(inputs, distractors=np.load(ghost.distractors_npy))
  elif ghost.get('auo') and ghost.get('distractors_run'):
    inputs = dataclasses.replace(inputs, distractors=run_mined_distractors(
        ghost.distractors_run, dataset, ghost.k_b, os.path.join(workdir, 'distractors')))
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
    config = saved_config(path)
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


def mine_distractors(run_dir: str, k_b: int, dataset=None) -> tuple[np.ndarray, dict]:
  """(AUO distractors [I, k_b], a summary) mined from the finished generative run in
  `run_dir`: every training example whose target is a tail item is decoded with the run's
  scorer, and ranked_above (methods/ghost.py) keeps the head items ranked above the target
  most often. Training examples only, so no valid or test target enters."""
  config, dataset, method, params = load_run(run_dir, dataset=dataset)
  if methods.spec(config.method).family != 'generative':
    raise ConfigError(f'ghost.distractors_run={run_dir}: method {config.method} has no beam '
                      'to mine; use a generative run (LC-Rec, Ghost, TIGER, ...).')
  users, positions = dataset.train_examples()
  tail = ~dataset.is_head[dataset.seq_items[positions]]
  users, positions = users[tail], positions[tail]
  histories, _, targets = prefix_histories(dataset, positions, users)
  batch_size, k = config.eval.batch_size, max(config.eval.ks)
  tops = []
  for start in progress.bar(range(0, len(targets), batch_size), desc='Mining distractors',
                            unit='batch'):
    rows = np.arange(start, min(start + batch_size, len(targets)))
    padded = np.pad(rows, (0, batch_size - len(rows)))  # one compiled shape
    batch = {'user': users[padded].astype(np.int32), 'history': histories[padded],
             'target': targets[padded]}
    tops.append(np.asarray(method.predict_topk(params, batch, k)[0])[:len(rows)])
  top = np.concatenate(tops)
  distractors = ranked_above(top, targets, dataset.is_head, k_b)
  summary = {'run': os.path.abspath(run_dir), 'dataset': dataset.name,
             'num_items': int(dataset.num_items), 'k_b': k_b, 'top_k': k,
             'tail_examples': int(len(targets)),
             'tail_items_with_k_b': int((distractors[~dataset.is_head] >= 0).all(1).sum()),
             'tail_items': int((~dataset.is_head).sum()),
             'tail_targets_in_top_k': float((top == targets[:, None]).any(1).mean())}
  return distractors, summary


def run_mined_distractors(run_dir: str, dataset, k_b: int, folder: str) -> np.ndarray:
  """mine_distractors of `run_dir` (ghost.distractors_run), mined once and then read from
  folder/mined.npy (folder/mined.json: where they came from), so a resumed or re-evaluated
  run reads the same ones."""
  path = os.path.join(folder, 'mined.npy')
  if not os.path.exists(path):
    distractors, summary = mine_distractors(run_dir, k_b, dataset)
    os.makedirs(folder, exist_ok=True)
    np.save(path + '.tmp.npy', distractors)
    os.replace(path + '.tmp.npy', path)
    with open(os.path.join(folder, 'mined.json'), 'w') as f:
      json.dump(summary, f, indent=2)
    print(f'AUO distractors mined from {run_dir}: {summary}', flush=True)
  return np.load(path)


def write_results(results: dict, ks, workdir: str) -> str:
  """results.json and results.md (every metric of every split) in `workdir`."""
  with open(os.path.join(workdir, 'results.json'), 'w') as f:
    json.dump(results, f, indent=2)
  parts = [f"# {results['name']} on {results['dataset']} (seed {results['seed']})",
           f"Protocol: {results['protocol']}."]
  if 'evaluated' in results:
    parts.append(f"Evaluated from the best checkpoint (step "
                 f"{results['evaluated']['checkpoint_step']}) of {results['evaluated']['run']}.")
  for split, metrics in results['splits'].items():
    parts += [f'## {split}', tables.run_table(metrics, ks)]
  text = '\n\n'.join(parts) + '\n'
  with open(os.path.join(workdir, 'results.md'), 'w') as f:
    f.write(text)
  return text


def headline(results: dict, ks, seconds: float, workdir: str) -> str:
  """One line: the test split's (else the last split's) main metrics at K = 10 (else the
  largest K), the time, and where the full tables are."""
  split = 'test' if 'test' in results['splits'] else list(results['splits'])[-1]
  metrics = results['splits'][split]
  k = 10 if 10 in [int(x) for x in ks] else max(int(x) for x in ks)
  shown = [(f'HR@{k}', f'hr@{k}'), (f'NDCG@{k}', f'ndcg@{k}'), (f'tail HR@{k}', f'hr@{k}/tail'),
           (f'MGU@{k}', f'mgu@{k}')]
  values = ', '.join(f'{title} {metrics[key]:.4f}' for title, key in shown if key in metrics)
  return (f"{results['name']} (seed {results['seed']}), {split}: {values}; {seconds:.0f} s; "
          f"every metric in {os.path.join(workdir, 'results.md')}")
