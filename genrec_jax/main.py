r"""genrec_jax entry point.

  python -m genrec_jax.main --config=configs/pop_ml100k.py --workdir=runs/pop_ml100k
  python -m genrec_jax.main --config=configs/pop_ml100k.py --config.eval.mask_history=True ...
  python -m genrec_jax.main --mode=report --workdir=runs   # tables over every run in runs/
  python -m genrec_jax.main --mode=eval --workdir=RUN --config=<RUN's config> \
      --config.decode.beam_size=50 --out=RUN/ablations/beam50  # an ablation, no retraining
  python -m genrec_jax.main --mode=list                    # configs, variants, methods, datasets
  python -m genrec_jax.main --mode=show_config --config=configs/ghost_ins.py:cpu
"""

import os
import sys

from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags

from genrec_jax import catalog
from genrec_jax import config as config_lib
from genrec_jax import progress
from genrec_jax import run
from genrec_jax.config import ConfigError
from genrec_jax.data.raw import DataError
from genrec_jax.models.hf_loading import CheckpointError
from genrec_jax.report import tables
from genrec_jax.train import distributed

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file('config', None, 'Config file, e.g. configs/pop_ml100k.py:cpu.')
flags.DEFINE_string('workdir', None, 'Run directory (config, metrics, results); required by '
                    'train, eval, tokenize and report.')
flags.DEFINE_enum('mode', 'train', ['train', 'eval', 'tokenize', 'report', 'list', 'show_config'],
                  'train: fit and evaluate; eval: evaluate the best checkpoint; tokenize: '
                  'build the item SIDs and print their statistics; report: tables of all '
                  'runs under --workdir; list: the configs with their variants, the methods '
                  'and datasets; show_config: every key of --config with its value.')
flags.DEFINE_string('coordinator_address', '', 'Multi-process runs without SLURM/TPU '
                    'auto-detection: host:port of process 0.')
flags.DEFINE_integer('num_processes', 0, 'With --coordinator_address.')
flags.DEFINE_integer('process_id', -1, 'With --coordinator_address.')
flags.DEFINE_string('out', None, '--mode=eval: where the results go (default <workdir>/eval); '
                    'the trained run\'s own results are never overwritten.')
flags.DEFINE_enum('progress', 'auto', list(progress.STYLES), 'Progress bars: bar (redrawn in '
                  'place), log (a plain line every 30 s, for cluster logs) or auto (bar on a '
                  'terminal, else log).')
flags.DEFINE_list('ks', ['10'], '--mode=report: the cutoffs K of the table\'s columns.')
flags.DEFINE_bool('traceback', False, 'Show the full traceback of config, data, workdir and '
                  'checkpoint errors (by default they print one line).')

# Known errors print one line and exit with their own code; anything else is a bug and
# keeps its traceback.
EXIT_CODES = {ConfigError: 2, DataError: 3, run.WorkdirError: 4, FloatingPointError: 5,
              CheckpointError: 6}


def main(argv):
  try:
    _main(argv)
  except tuple(EXIT_CODES) as e:
    if FLAGS.traceback:
      raise
    _exit(e)


def _exit(error: Exception):
  print(f'{type(error).__name__}: {error}', file=sys.stderr)
  sys.exit(next(code for cls, code in EXIT_CODES.items() if isinstance(error, cls)))


def parse_flags(argv):
  """absl's flag parsing, where a wrong --config.<key> or config variant is one ConfigError
  line (with a "did you mean"), not a flags-parsing traceback."""
  try:
    return FLAGS(argv)
  except flags.IllegalFlagValueError as e:
    if not str(e).startswith('flag --config='):
      raise
    # config_flags wraps the config file's own error (e.g. an unknown variant) in a traceback.
    lines = [line.strip() for line in str(e).strip().splitlines() if line.strip()]
    _exit(ConfigError(f'{str(e).split(":", 1)[0]}: {lines[-1]}'))
  except (flags.UnrecognizedFlagError, AttributeError, KeyError):
    # An override of a key the config lacks fails inside config_flags with one of these,
    # before the config is set: read the file again to name the key.
    spec = next((a.split('=', 1)[1] for a in argv[1:] if a.startswith('--config=')), None)
    if spec is None:
      raise
    config = config_lib.load_config_file(spec)
    for arg in argv[1:]:
      if arg.startswith('--config.'):
        try:
          config_lib.check_override(config, arg.removeprefix('--config.').split('=', 1)[0])
        except ConfigError as error:
          _exit(error)
    raise


def _main(argv):
  del argv
  if not FLAGS['verbosity'].present:  # library INFO logs (orbax, ...) only when asked for
    logging.set_verbosity(logging.WARNING)
  os.environ[progress.ENV] = FLAGS.progress  # read by every bar, inherited by subprocesses
  if FLAGS.mode == 'list':
    print(catalog.listing())
    return
  if FLAGS.mode == 'show_config':
    if FLAGS.config is None:
      raise app.UsageError('--mode=show_config needs --config=configs/<file>[:<variant>].')
    config_lib.validate(FLAGS.config)
    print(catalog.show(FLAGS.config))
    return
  if not FLAGS.workdir:
    raise app.UsageError(f'--mode={FLAGS.mode} needs --workdir.')
  if FLAGS.mode == 'report':
    if not os.path.isdir(FLAGS.workdir):
      raise run.WorkdirError(f'--mode=report: {FLAGS.workdir} is not a directory; pass the '
                             'folder that holds the runs (e.g. --workdir=runs).')
    print(tables.report(FLAGS.workdir, ks=[int(k) for k in FLAGS.ks]))
    return
  distributed.initialize(FLAGS.coordinator_address, FLAGS.num_processes, FLAGS.process_id)
  if FLAGS.config is None:
    raise app.UsageError('--config is required for --mode=train/eval.')
  run.train_and_evaluate(FLAGS.config, FLAGS.workdir, eval_only=FLAGS.mode == 'eval',
                         tokenize_only=FLAGS.mode == 'tokenize', out=FLAGS.out)


if __name__ == '__main__':
  app.run(main, flags_parser=parse_flags)
