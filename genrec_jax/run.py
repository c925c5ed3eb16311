"""train_and_evaluate(config, workdir): one run from config to results table.

Stages: validate the config -> write config.json -> load (or build and cache) the dataset
-> build the method named by config.method -> fit (or load the best checkpoint for
eval-only runs) -> evaluate each split -> write metrics.jsonl, results.json and results.md
into the workdir.
"""

from __future__ import annotations

import json
import os

from absl import logging
import jax
import ml_collections

from genrec_jax import config as config_lib
from genrec_jax import methods
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
  if not method.trainable:
    params = method.init(jax.random.PRNGKey(config.seed))
  elif eval_only:
    if not os.path.isdir(os.path.join(workdir, 'checkpoints')):
      raise WorkdirError(f'--mode=eval needs a trained run: {workdir} has no checkpoints/. '
                         'Train it first (--mode=train), or point --workdir at a finished run.')
    params = loop.load_best_params(config, method, workdir)
  else:
    validate = lambda p: evaluate(method, p, dataset, 'valid', config.eval, config.seed)
    params = loop.fit(config, method, dataset, workdir, validate_fn=validate, writer=writer)

  # ------------------------------------------------------------------------ evaluation --
  protocol = protocol_description(config.eval)
  logging.info('Evaluating %s on %s (%s)', config.name, dataset.name, protocol)
  splits = {}
  extra = {}
  if (config.method == 'ifairlrs' and config.ifairlrs.mode == 'rr'
      and config.ifairlrs.rr_lambda_grid and config.eval.protocol == 'full'):
    # IFairLRS-RR: λ chosen on valid (the same beam re-ranked per λ), then applied to test.
    selection = method.select_rr_lambda(params, dataset, config.eval,
                                        config.ifairlrs.rr_lambda_grid,
                                        config.ifairlrs.rr_select_metric)
    logging.info('IFairLRS-RR: rr_lambda=%s chosen on valid (%s by lambda: %s)',
                 selection['rr_lambda'], selection['metric'], selection['valid_by_lambda'])
    if 'valid' in config.eval.splits:
      splits['valid'] = selection['valid_metrics']
    extra['ifairlrs_rr'] = {k: v for k, v in selection.items() if k != 'valid_metrics'}
  for split in config.eval.splits:
    if split == 'valid' and method.trainable and split not in splits:  # best params' valid
      splits[split] = loop.best_validation_metrics(workdir, config.eval.ks)
    if not splits.get(split):
      splits[split] = evaluate(method, params, dataset, split, config.eval, config.seed)
    writer.write(-1, f'final_{split}', splits[split])
  writer.close()

  # --------------------------------------------------------------------------- results --
  results = {'name': config.name, 'method': config.method, 'seed': config.seed,
             'dataset': dataset.name, 'statistics': dataset.statistics(),
             'protocol': protocol, 'splits': splits, **extra}
  if is_writer:
    write_results(results, config.eval.ks, workdir)
  return results


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
  embeddings = item_embeddings(config.embed, dataset, workdir)
  sids = build_sids(config.tokenize, dataset, embeddings, config.seed, workdir)
  print(describe_sids(sids, dataset.is_head))
  return embeddings, sids


def build_method(config: ml_collections.ConfigDict, dataset, workdir: str):
  """The method named by config.method on `dataset` (with its SIDs if it uses them)."""
  module = methods.get(config.method)
  embeddings = sids = None
  if getattr(module, 'uses_sids', False):
    embeddings, sids = item_sids(config, dataset, workdir)
  return module.build(config, dataset, sids, embeddings=embeddings)


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
