"""Search hyper-parameters of a config with Optuna, on the validation split.

    python tools/analysis/search_hparams.py CONFIG --space SPACE.py \
        --trials N [--parallel P] [--seeds 0 1] [--metric mIoU] [--grid] \
        [--work-dir DIR] [--sampler-seed S] [--cfg-options k=v ...]

SPACE.py declares the searched config keys in --cfg-options' dotted form:

    space = {
        'optim_wrapper.optimizer.lr':
            dict(type='float', low=1e-4, high=1e-2, log=True),
        'model.backbone.prompt.num_tokens':
            dict(type='int', low=10, high=50, step=10),
        'model.backbone.prompt.cls_loss.loss_weight':
            dict(type='categorical', choices=[0.01, 0.05, 0.1]),
    }

Every trial and seed is one ``tools/train.py`` process (``--parallel`` at a
time, sharing the GPU) in ``<work-dir>/trials/<trial>/seed<S>``; its score is
the last validation value of --metric, the objective the mean over --seeds.
The study lives in ``<work-dir>/study.db`` (SQLite): running the same command
again continues it up to N finished trials in total.  Outputs:
``trials.md`` (the table), ``best_config.py`` and ``best_params.json``.
The validation data must not be a test split (the tool refuses).
"""
import argparse
import fcntl
import json
import os
import os.path as osp
import signal
import subprocess
import sys
import time
import warnings

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
PROG = 'search_hparams.py'


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description='Hyper-parameter search (Optuna) of an mmship config on '
        'its validation split.')
    p.add_argument('config', help='the config to tune')
    p.add_argument('--space', required=True,
                   help='a .py file defining `space` (config key -> spec)')
    p.add_argument('--trials', type=int, required=True,
                   help='finished trials the study should hold in total '
                   '(a rerun continues up to this number)')
    p.add_argument('--parallel', type=int, default=1,
                   help='training processes at a time (they share the GPU)')
    p.add_argument('--seeds', type=int, nargs='+', default=[0],
                   help='seeds every trial runs (randomness.seed); the '
                   'objective is their mean (default: 0)')
    p.add_argument('--metric', help='the validation metric to maximize '
                   '(default: mIoU for mmseg configs, accuracy/top1 for '
                   'mmpretrain configs)')
    p.add_argument('--minimize', action='store_true',
                   help='minimize the metric instead (e.g. a loss)')
    p.add_argument('--grid', action='store_true',
                   help='enumerate the grid of a categorical (or stepped '
                   'int) space instead of sampling with TPE; --trials is '
                   'capped at the grid size')
    p.add_argument('--sampler-seed', type=int, default=0,
                   help='seed of the TPE sampler (default 0)')
    p.add_argument('--work-dir', help='study folder (default: '
                   'work_dirs/search/<config name>)')
    p.add_argument('--timeout', type=float, default=None,
                   help='seconds after which one training process is '
                   'stopped and its trial recorded as failed')
    p.add_argument('--max-failures', type=int, default=3,
                   help='start no new trial after this many trials in a row '
                   'failed (default 3; 0: never stop)')
    p.add_argument('--keep-checkpoints', action='store_true',
                   help='keep the trials\' checkpoints (default: removed '
                   'once a run\'s metric is read)')
    p.add_argument('--cfg-options', nargs='+', default=[],
                   help='fixed overrides for every trial (key=value, as in '
                   'tools/train.py)')
    return p.parse_args(argv)


def fail(msg):
    sys.exit(f'{PROG}: error: {msg}')


class Setup:
    """Everything checked before the study is opened."""

    def __init__(self, args):
        from mmengine.config import Config

        from mmship.engine import search
        from mmship.engine.launch import UsageError, load_config
        self.args = args
        try:
            if args.trials < 1:
                raise UsageError('--trials must be >= 1.')
            if args.parallel < 1:
                raise UsageError('--parallel must be >= 1.')
            if len(set(args.seeds)) != len(args.seeds):
                raise UsageError(f'--seeds {args.seeds} repeats a seed.')
            self.options = search.parse_cfg_options(args.cfg_options)
            search.check_option_keys(list(self.options), '--cfg-options')
            self.cfg = load_config(args.config, self.options)
            raw = Config.fromfile(args.config)
            search.check_val_only(self.cfg, raw, args.config)
            self.schedule_note = search.check_val_schedule(self.cfg)
            self.space = search.load_space(args.space, self.cfg, args.config,
                                           self.options)
            self.grid = search.check_grid(self.space) if args.grid else None
            self.metric = args.metric or \
                search.DEFAULT_METRIC[self.cfg.default_scope]
        except UsageError as err:
            fail(err)
        self.stem = osp.splitext(osp.basename(args.config))[0]
        self.work_dir = args.work_dir or osp.join('work_dirs', 'search',
                                                  self.stem)
        if osp.exists(self.work_dir) and not osp.isdir(self.work_dir):
            fail(f'work dir {self.work_dir!r} exists and is not a folder.')
        self.attrs = dict(
            config=osp.normpath(args.config),
            config_hash=search.config_digest(self.cfg),
            space=self.space, space_hash=search.digest(self.space),
            metric=self.metric, seeds=list(args.seeds),
            sampler='grid' if args.grid else 'tpe')
        self.search = search


def make_sampler(setup):
    import optuna

    class Grid(optuna.samplers.GridSampler):
        # The tool counts trials itself; the stock after_trial calls
        # study.stop(), which ask/tell (no optimize loop) does not allow.
        def after_trial(self, study, trial, state, values):
            pass

    if setup.grid is not None:
        return Grid(setup.grid, seed=setup.args.sampler_seed)
    return optuna.samplers.TPESampler(
        seed=setup.args.sampler_seed,
        constant_liar=setup.args.parallel > 1)


def distributions(space):
    from optuna.distributions import (CategoricalDistribution,
                                      FloatDistribution, IntDistribution)
    out = {}
    for key, s in space.items():
        if s['type'] == 'categorical':
            out[key] = CategoricalDistribution(s['choices'])
        elif s['type'] == 'int':
            out[key] = IntDistribution(s['low'], s['high'], log=s['log'],
                                       step=s['step'])
        else:
            out[key] = FloatDistribution(s['low'], s['high'], log=s['log'],
                                         step=s.get('step'))
    return out


def open_study(setup):
    """The study of the work dir; refuses one made by another setup."""
    import optuna
    storage = f'sqlite:///{osp.abspath(setup.work_dir)}/study.db'
    study = optuna.create_study(
        study_name=setup.stem, storage=storage, load_if_exists=True,
        sampler=make_sampler(setup),
        direction='minimize' if setup.args.minimize else 'maximize')
    want = 'minimize' if setup.args.minimize else 'maximize'
    if study.direction.name.lower() != want:
        fail(f'the study in {setup.work_dir} was run to '
             f'{study.direction.name.lower()} the metric; this command '
             f'would {want} it. Use the same flags, or another --work-dir.')
    old = study.user_attrs
    if not old:
        for key, value in setup.attrs.items():
            study.set_user_attr(key, value)
        return study
    what = {'config_hash': f'the config ({setup.attrs["config"]} with its '
            f'bases and --cfg-options)',
            'space_hash': f'the search space ({setup.args.space})',
            'metric': 'the metric', 'seeds': 'the seeds',
            'sampler': 'the sampler (--grid)'}
    changed = [f'{desc}: was {old.get(k)!r}, now {setup.attrs[k]!r}'
               if k in ('metric', 'seeds', 'sampler') else desc
               for k, desc in what.items() if old.get(k) != setup.attrs[k]]
    if changed:
        fail(f'the study in {setup.work_dir}/study.db (from '
             f'{old.get("config")}) was run with different settings, so its '
             f'trials are not comparable with new ones; changed: '
             f'{"; ".join(changed)}. Rerun the original command to continue '
             f'it, or give this search another --work-dir.')
    return study


def requeue_stale(study, log):
    """Trials left RUNNING by a killed sweep: failed (interrupted), and their
    params queued again so that they run first."""
    from optuna.trial import TrialState
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        study._storage.set_trial_user_attr(t._trial_id, 'interrupted', True)
        study._storage.set_trial_state_values(t._trial_id, TrialState.FAIL)
        study.enqueue_trial(t.params, user_attrs={'requeued_from':
                                                  t.number})
        log(f'trial {t.number} was interrupted; its params run again')


def finished(study):
    from optuna.trial import TrialState
    return [t for t in study.get_trials(deepcopy=False)
            if t.state == TrialState.COMPLETE or
            (t.state == TrialState.FAIL and not t.user_attrs.get(
                'interrupted'))]


class Run:
    """One tools/train.py process: one seed of one trial."""

    def __init__(self, setup, trial, seed):
        self.trial, self.seed = trial, seed
        base = osp.join(setup.work_dir, 'trials', f'{trial.number:03d}')
        self.work_dir = osp.join(base, f'seed{seed}')
        self.log_path = osp.join(base, f'seed{seed}.log')
        opts = list(setup.args.cfg_options) + [
            setup.search.option_string(k, v)
            for k, v in trial.params.items()] + [f'randomness.seed={seed}']
        self.cmd = [sys.executable, osp.join(ROOT, 'tools', 'train.py'),
                    setup.args.config, '--work-dir', self.work_dir,
                    '--cfg-options'] + opts
        self.proc, self.start, self.end, self.error = None, None, None, None

    def launch(self):
        os.makedirs(osp.dirname(self.log_path), exist_ok=True)
        with open(self.log_path, 'w') as log:
            log.write(' '.join(self.cmd) + '\n\n')
            log.flush()
            # own process group: stopping a run stops its data workers too
            self.proc = subprocess.Popen(
                self.cmd, stdout=log, stderr=subprocess.STDOUT,
                env=dict(os.environ, PYTHONUNBUFFERED='1'),
                start_new_session=True)
        self.start = time.time()

    def stop(self):
        if self.proc is None or self.proc.poll() is not None:
            return
        for sig, wait in ((signal.SIGTERM, 10), (signal.SIGKILL, 10)):
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                return
            try:
                self.proc.wait(wait)
                return
            except subprocess.TimeoutExpired:
                continue


class Sweep:

    def __init__(self, setup, study):
        self.setup, self.study = setup, study
        self.dists = distributions(setup.space)
        self.pending, self.active, self.trials = [], [], {}
        self.failed_in_row, self.stopped = 0, None

    def log(self, msg):
        print(f'[{time.strftime("%H:%M:%S")}] {msg}', flush=True)

    def new_trial(self):
        trial = self.study.ask(self.dists)
        runs = [Run(self.setup, trial, s) for s in self.setup.args.seeds]
        self.trials[trial.number] = dict(trial=trial, runs=runs,
                                         values={}, errors={}, done=0,
                                         start=time.time())
        self.pending += runs
        params = ', '.join(f'{k}={v!r}' for k, v in trial.params.items())
        self.log(f'trial {trial.number} start: {params}')

    def finish_run(self, run):
        item = self.trials[run.trial.number]
        code = run.proc.returncode
        run.end = time.time()
        seconds = run.end - run.start
        if run.error is None and code != 0:
            run.error = f'exit status {code}'
        if run.error is None:
            value, why = self.setup.search.read_metric(run.work_dir,
                                                       self.setup.metric)
            run.error = why
        if run.error is None:
            item['values'][str(run.seed)] = value
            run.trial.set_user_attr(f'seed{run.seed}', value)
            self.log(f'trial {run.trial.number} seed {run.seed}: '
                     f'{self.setup.metric} {value:.4g} ({seconds:.0f} s)')
        else:
            item['errors'][str(run.seed)] = run.error
            self.log(f'trial {run.trial.number} seed {run.seed} FAILED '
                     f'({run.error}); log: {run.log_path}')
        if not self.setup.args.keep_checkpoints:
            for name in os.listdir(run.work_dir) if osp.isdir(run.work_dir) \
                    else []:
                if name.endswith('.pth') or name == 'last_checkpoint':
                    os.remove(osp.join(run.work_dir, name))
        item['done'] += 1  # not poll(): runs of a trial may end together
        if item['done'] == len(item['runs']):
            self.tell(item)

    def tell(self, item):
        from optuna.trial import TrialState
        trial = item['trial']
        trial.set_user_attr('seconds', time.time() - item['start'])
        trial.set_user_attr('logs', {str(r.seed): r.log_path
                                     for r in item['runs']})
        trial.set_user_attr('run_times', {str(r.seed): [r.start, r.end]
                                          for r in item['runs']})
        del self.trials[trial.number]
        if item['errors']:
            trial.set_user_attr('errors', item['errors'])
            self.study.tell(trial, state=TrialState.FAIL)
            self.log(f'trial {trial.number} failed')
            self.failed_in_row += 1
            limit = self.setup.args.max_failures
            if limit and self.failed_in_row >= limit and not self.stopped:
                self.stopped = (f'{self.failed_in_row} trials failed in a '
                                f'row; no new trials start (see the logs in '
                                f'trials.md; --max-failures 0 never stops)')
                self.log(self.stopped)
        else:
            values = list(item['values'].values())
            mean = sum(values) / len(values)
            self.study.tell(trial, mean)
            self.failed_in_row = 0
            best = self.study.best_trial
            self.log(f'trial {trial.number} done: mean {mean:.4g}; best: '
                     f'trial {best.number} ({best.value:.4g}); '
                     f'{len(finished(self.study))}/{self.target} finished')
        write_outputs(self.setup, self.study, quiet=True)

    def run(self, target):
        self.target = target
        parallel = self.setup.args.parallel
        timeout = self.setup.args.timeout
        try:
            while True:
                todo = 0 if self.stopped else \
                    target - len(finished(self.study)) - len(self.trials)
                while len(self.active) < parallel and (self.pending or
                                                       todo > 0):
                    if not self.pending:
                        self.new_trial()
                        todo -= 1
                    run = self.pending.pop(0)
                    run.launch()
                    self.active.append(run)
                if not self.active:
                    break
                time.sleep(0.5)
                for run in list(self.active):
                    if timeout and run.proc.poll() is None and \
                            time.time() - run.start > timeout:
                        run.error = f'stopped after --timeout {timeout:g} s'
                        run.stop()
                    if run.proc.poll() is not None:
                        self.active.remove(run)
                        self.finish_run(run)
        except KeyboardInterrupt:
            self.log('interrupted: stopping the running trainings')
            for run in self.active:
                run.stop()
            from optuna.trial import TrialState
            for item in list(self.trials.values()):
                trial = item['trial']
                trial.set_user_attr('interrupted', True)
                self.study.tell(trial, state=TrialState.FAIL)
                self.study.enqueue_trial(trial.params, user_attrs={
                    'requeued_from': trial.number})
            write_outputs(self.setup, self.study)
            fail('interrupted; rerun the same command to continue the study '
                 '(the interrupted trials run again first).')


def write_outputs(setup, study, quiet=False):
    """trials.md, and best_config.py + best_params.json once a trial
    completed."""
    from optuna.trial import TrialState
    rows = []
    for t in study.get_trials(deepcopy=False):
        seeds = {str(s): t.user_attrs.get(f'seed{s}')
                 for s in setup.args.seeds}
        state = t.state.name
        if t.state == TrialState.FAIL and t.user_attrs.get('interrupted'):
            state = 'INTERRUPTED'
        seconds = t.user_attrs.get('seconds')
        if seconds is None and t.duration is not None:
            seconds = t.duration.total_seconds()
        params = t.params
        if t.state == TrialState.WAITING:  # queued again after interruption
            state, params = 'QUEUED', t.system_attrs.get('fixed_params', {})
        rows.append(dict(number=t.number, params=params, seeds=seeds,
                         mean=t.value if t.state == TrialState.COMPLETE
                         else None, state=state, seconds=seconds))
    complete = [t for t in study.get_trials(deepcopy=False,
                                            states=(TrialState.COMPLETE,))]
    best = study.best_trial if complete else None
    table = setup.search.trial_table(rows, list(setup.space),
                                     setup.args.seeds,
                                     best.number if best else None)
    failed = [t for t in study.get_trials(deepcopy=False,
                                          states=(TrialState.FAIL,))
              if t.user_attrs.get('errors')]
    notes = [f'- trial {t.number}: ' + '; '.join(
        f'seed {s}: {e} ({t.user_attrs.get("logs", {}).get(s)})'
        for s, e in t.user_attrs['errors'].items()) for t in failed]
    head = (f'# Search: {setup.attrs["config"]}\n\n'
            f'{setup.metric} on the validation split, '
            f'{"minimized" if setup.args.minimize else "maximized"}, mean '
            f'over seeds {" ".join(map(str, setup.args.seeds))}; sampler '
            f'{setup.attrs["sampler"]}; study {study.study_name} in '
            f'study.db.\n')
    if best:
        head += (f'\nBest: trial {best.number}, {setup.metric} '
                 f'{best.value:.4g} (best_config.py, best_params.json); '
                 f'train it with `python tools/train.py '
                 f'{osp.join(setup.work_dir, "best_config.py")}`.\n')
    text = head + '\n' + table + '\n' + \
        ('\nFailed trials:\n' + '\n'.join(notes) + '\n' if notes else '')
    with open(osp.join(setup.work_dir, 'trials.md'), 'w') as f:
        f.write(text)
    if best:
        cfg = setup.cfg.copy()
        cfg.merge_from_dict(dict(best.params))
        cfg.dump(osp.join(setup.work_dir, 'best_config.py'))
        with open(osp.join(setup.work_dir, 'best_params.json'), 'w') as f:
            json.dump(dict(trial=best.number, metric=setup.metric,
                           value=best.value, params=best.params,
                           seeds={s: best.user_attrs.get(f'seed{s}')
                                  for s in setup.args.seeds},
                           config=setup.attrs['config'],
                           cfg_options=list(setup.args.cfg_options)),
                      f, indent=2)
    if not quiet:
        print('\n' + table)
        print(f'\n{osp.join(setup.work_dir, "trials.md")}' +
              (f'\nbest: trial {best.number} ({setup.metric} '
               f'{best.value:.4g}): {best.params}\n'
               f'{osp.join(setup.work_dir, "best_config.py")}' if best
               else '\nno trial completed; see the failed trials\' logs'))
    return best


def main(argv=None):
    args = parse_args(argv)
    try:
        import optuna
    except ImportError:
        fail('optuna is not installed: pip install optuna==4.5.0 (or pip '
             'install -e ".[sweep]").')
    setup = Setup(args)  # every check; nothing is written before this
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings('ignore', category=optuna.exceptions.
                            ExperimentalWarning)
    os.makedirs(setup.work_dir, exist_ok=True)
    lock = open(osp.join(setup.work_dir, '.lock'), 'w')
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        lock.close()
        fail(f'another search is running in {setup.work_dir}; wait for it '
             f'or use another --work-dir.')
    # released however main() ends: tests call main() in-process, where a
    # second flock on the file would fail while this one is open
    try:
        run_study(setup, args)
    finally:
        lock.close()


def run_study(setup, args):
    """Open or resume the study, run the missing trials, write the
    outputs."""
    study = open_study(setup)
    sweep = Sweep(setup, study)
    if setup.schedule_note:
        sweep.log(f'note: {setup.schedule_note}')
    requeue_stale(study, sweep.log)
    target = args.trials
    if setup.grid is not None:
        size = 1
        for values in setup.grid.values():
            size *= len(values)
        if target > size:
            sweep.log(f'--grid: the grid has {size} points; running {size} '
                      f'trials, not {target}')
            target = size
    done = len(finished(study))
    if done >= target:
        sweep.log(f'the study already holds {done} finished trials '
                  f'(--trials {args.trials}); nothing to run')
    else:
        sweep.log(f'{setup.attrs["config"]}: {target - done} trial(s) '
                  f'to run ({done} finished), {args.parallel} process(es) '
                  f'at a time, seeds {args.seeds}, {setup.metric}; '
                  f'{setup.work_dir}')
        sweep.run(target)
    best = write_outputs(setup, study)
    if sweep.stopped:
        fail(sweep.stopped)
    if best is None:
        sys.exit(1)


if __name__ == '__main__':
    main()
