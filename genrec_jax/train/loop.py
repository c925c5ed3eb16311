"""fit(): the training loop every trainable method uses, top to bottom.

  setup       mesh, optimizer, state created sharded
  data        grain iterator (process-local share), global batches
  restore     resume this workdir > a previous phase's params > train.init_from > scratch
  step        jitted, donated; method.train_loss(params, batch, rng, epoch); flat dict of
              scalar metrics; non-finite loss stops the run
  loop        progress bar, logging, validation + early stopping, checkpoints, SIGTERM
  finish      best params back for the test evaluation
"""

from __future__ import annotations

import json
import math
import os
import signal

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec
import numpy as np

from genrec_jax import progress
from genrec_jax.data import pipeline
from genrec_jax.train import checkpoint as checkpoint_lib
from genrec_jax.train import sharding as sharding_lib
from genrec_jax.train import state as state_lib
from genrec_jax.train.writer import MetricWriter


class NonFiniteLossError(FloatingPointError):
  pass


def fit(config, method, dataset, workdir: str, validate_fn=None, writer=None,
        init_params=None):
  """Trains `method`; returns the params to test (best validation, else the last).

  validate_fn(params) -> metrics dict on the validation split (or None to skip validation).
  init_params: params to start from when the workdir has no checkpoint (a previous phase's).
  """
  tc = config.train
  writer = writer or MetricWriter(workdir)
  # ----------------------------------------------------------------------------- setup --
  mesh = sharding_lib.make_mesh(config.sharding)
  rules = sharding_lib.rules(config.sharding)
  process_count, process_index = jax.process_count(), jax.process_index()
  if tc.batch_size % (process_count * mesh.shape['data'] * mesh.shape['fsdp']):
    raise ValueError(f'config.train.batch_size={tc.batch_size} must divide over '
                     f'{process_count} processes and the data x fsdp mesh axes.')
  dataset = method.train_dataset or dataset  # e.g. augmented training sequences
  example_options = getattr(method, 'example_options', {})  # e.g. BERT4Rec's mask_prob
  num_examples = pipeline.num_train_examples(dataset, tc.example_kind, tc.targets_per_chunk,
                                             **example_options)
  steps_per_epoch = max(num_examples // tc.batch_size, 1)
  num_steps = tc.num_steps or tc.num_epochs * steps_per_epoch
  eval_every = tc.eval_every or steps_per_epoch
  checkpoint_every = tc.checkpoint_every or eval_every
  tx, schedule = state_lib.make_optimizer(tc, num_steps, method.restrict_optimizer)
  init_rng, train_rng = jax.random.split(jax.random.PRNGKey(config.seed))
  state, shardings = state_lib.create_sharded_state(method.init, tx, mesh, rules, init_rng)
  _say(f'Training {config.name}: {num_steps} steps ({steps_per_epoch} per epoch), '
       f'{num_params(state.params):,} params, mesh {dict(mesh.shape)}')

  # ------------------------------------------------------------------------------ data --
  batches = pipeline.train_iterator(
      dataset, batch_size=tc.batch_size // process_count, seed=config.seed,
      process_index=process_index, process_count=process_count, kind=tc.example_kind,
      targets_per_chunk=tc.targets_per_chunk, **example_options)
  batch_sharding = sharding_lib.batch_sharding(mesh, rules)

  # --------------------------------------------------------------------------- restore --
  checkpoints = checkpoint_lib.Checkpoints(workdir, keep=tc.keep_checkpoints)
  loop = {'best': None, 'best_step': -1, 'bad_validations': 0, 'stopped_early': False}
  if checkpoints.latest_step() is not None:
    state, data_state, loop = checkpoints.restore(state, shardings)
    batches.set_state(data_state)
    dropped = writer.drop_after(int(state.step))
    _say(f'Resumed from step {int(state.step)}' +
         (f' ({dropped} metrics.jsonl lines after it dropped)' if dropped else ''))
  elif init_params is not None:
    state = state.replace(params=jax.device_put(init_params, shardings.params))
  elif tc.init_from:
    params = checkpoint_lib.params_from_run(
        tc.init_from, state.params, shardings.params,
        model_config=json.loads(config.model.to_json()) if 'model' in config else None)
    state = state.replace(params=params)
    _say(f'Params initialised from {tc.init_from}')

  # ------------------------------------------------------------------------------ step --
  train_step = jax.jit(make_train_step(method, tx, schedule, tc.grad_accum_steps,
                                       steps_per_epoch),
                       donate_argnums=0, out_shardings=(shardings, None))

  # ------------------------------------------------------------------------------ loop --
  preempted = []
  previous = signal.signal(signal.SIGTERM, lambda *_: preempted.append(True))
  start = int(state.step)
  bar = progress.bar(total=num_steps, initial=start, disable=not writer.enabled,
                     desc=config.name, mininterval=2.0)
  pending, window = None, []
  try:
    with jax.set_mesh(mesh):
      for step in range(start, num_steps):
        if loop['stopped_early']:
          break
        batch = sharding_lib.global_batch(next(batches), batch_sharding)
        state, metrics = train_step(state, batch, jax.random.fold_in(train_rng, step))
        if pending is not None:  # check the previous step while this one runs
          window.append(_finite_or_raise(pending, step))
        pending = metrics
        bar.update(1)
        done = step + 1
        if done % tc.log_every == 0 or done == num_steps:
          window.append(_finite_or_raise(pending, done))
          pending = None
          logged = {k: float(np.mean([m[k] for m in window])) for k in window[0]}
          logged['epoch'] = done / steps_per_epoch
          writer.write(done, 'train', logged)
          bar.set_postfix(loss=f'{logged["loss"]:.4f}', refresh=False)
          window = []
        if validate_fn is not None and (done % eval_every == 0 or done == num_steps):
          _validate(validate_fn, state.params, done, loop, tc, writer, checkpoints)
        if done % checkpoint_every == 0 or done == num_steps or preempted:
          checkpoints.save(done, state, batches.get_state(), loop)
        if preempted:
          _say(f'SIGTERM: saved step {done}; rerun with the same workdir to resume.')
          raise SystemExit(143)
  finally:
    bar.close()
    signal.signal(signal.SIGTERM, previous)

  # ---------------------------------------------------------------------------- finish --
  params = state.params
  if not _all_finite(params, mesh):  # the last loss was finite, but maybe not its update
    raise NonFiniteLossError(
        f'params are not finite after step {num_steps}: the last update overflowed. '
        f'Lower train.lr (now {tc.lr}); train.grad_clip (now {tc.grad_clip}) bounds the '
        'gradient norm, not the size of an update at this lr.')
  if loop['best'] is not None:
    params = checkpoints.restore_best(state.params, shardings.params)
    _say(f'Restored the best params (step {loop["best_step"]}, '
         f'{tc.early_stop_metric}={loop["best"]:.4f})')
  elif not checkpoints.has_best():  # no validation: the last params are the run's result
    checkpoints.save_best(int(state.step), params, {})
  checkpoints.close()
  return params


def make_train_step(method, tx, schedule, grad_accum_steps: int = 1, steps_per_epoch: int = 1):
  """(state, batch, rng) -> (state, metrics): loss, grads, optimizer update (jit it)."""
  def train_step(state, batch, rng):
    epoch = state.step.astype(jnp.float32) / steps_per_epoch
    def loss_fn(params):
      return method.train_loss(params, batch, rng, epoch)
    (loss, metrics), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = jax.tree.map(jnp.add, state.params, updates)
    metrics = {**metrics, 'loss': loss, 'grad_norm': _global_norm(grads),
               'lr': schedule(state.step // grad_accum_steps)}
    return state_lib.TrainState(step=state.step + 1, params=params, opt_state=opt_state), metrics
  return train_step


def load_best_params(config, method, workdir: str):
  """The best params saved in `workdir`, on this run's mesh (eval-only runs)."""
  mesh = sharding_lib.make_mesh(config.sharding)
  rng = jax.random.PRNGKey(config.seed)
  abstract = jax.eval_shape(method.init, rng)
  shardings = sharding_lib.logical_shardings(abstract, mesh, sharding_lib.rules(config.sharding))
  return checkpoint_lib.params_from_run(workdir, nn.unbox(abstract), shardings,
                                        source=f'the best params of {workdir}')


def best_step(workdir: str) -> int | None:
  """The step of the best params saved in `workdir` (None if it has none)."""
  best = os.path.join(workdir, 'checkpoints', 'best')
  steps = [int(name) for name in os.listdir(best) if name.isdigit()] if os.path.isdir(best) else []
  return max(steps, default=None)


def best_validation_metrics(workdir: str, ks) -> dict:
  """Validation metrics saved with the best params, if they cover every K in `ks` (runs
  before this was saved, or without validation, give {})."""
  checkpoints = checkpoint_lib.Checkpoints(workdir)
  try:
    metrics = checkpoints.best_metrics()
  finally:
    checkpoints.close()
  return metrics if all(f'hr@{k}' in metrics for k in ks) else {}


def _validate(validate_fn, params, step, loop, tc, writer, checkpoints):
  metrics = validate_fn(params)
  writer.write(step, 'valid', metrics)
  value = metrics[tc.early_stop_metric]
  if loop['best'] is None or value > loop['best']:
    loop.update(best=float(value), best_step=step, bad_validations=0)
    # All validation metrics go with the params: the final report reuses them.
    checkpoints.save_best(step, params, {k: float(v) for k, v in metrics.items()})
  else:
    loop['bad_validations'] += 1
    if tc.early_stop_patience and loop['bad_validations'] >= tc.early_stop_patience:
      loop['stopped_early'] = True
      _say(f'Early stop at step {step}: {tc.early_stop_metric} did not improve for '
           f'{loop["bad_validations"]} validations')


def _all_finite(params, mesh) -> bool:
  # Replicated output: every process can read it, whatever the params' sharding.
  check = jax.jit(lambda p: jnp.all(jnp.stack([jnp.isfinite(x).all()
                                               for x in jax.tree.leaves(p)])),
                  out_shardings=NamedSharding(mesh, PartitionSpec()))
  return bool(check(params))


def _finite_or_raise(metrics, step: int) -> dict:
  host = jax.device_get(metrics)
  if not math.isfinite(float(host['loss'])):
    raise NonFiniteLossError(
        f'loss is {float(host["loss"])} at step {step}; lower train.lr or check the data '
        '(train.grad_clip bounds the gradient norm, not the size of an update).')
  return {k: float(v) for k, v in host.items()}


def _say(message: str) -> None:
  if jax.process_index() == 0:
    print(message, flush=True)


def _global_norm(tree) -> jax.Array:
  return jnp.sqrt(sum(jnp.sum(jnp.square(x.astype(jnp.float32))) for x in jax.tree.leaves(tree)))


def num_params(params) -> int:
  return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(params))
