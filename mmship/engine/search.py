"""The checks and bookkeeping of ``tools/analysis/search_hparams.py``: the
search-space file, the val-only rule, reading a run's metric, the trial
table.  Nothing here imports optuna or builds a model, so every check runs
before a study is opened or a trial is trained."""
import argparse
import difflib
import glob
import hashlib
import json
import math
import os.path as osp
import re
from typing import Dict, List, Optional, Sequence

from mmengine.config import Config, DictAction

from .launch import UsageError

TYPES = {
    'float': {'low', 'high', 'log', 'step'},
    'int': {'low', 'high', 'log', 'step'},
    'categorical': {'choices'},
}
# Top-level config keys a sweep may not change: the test side is never
# touched, the val side is what trials are compared on, the seed and the
# work dir belong to the tool.
_NEVER = ('test_dataloader', 'test_evaluator', 'test_cfg', 'work_dir')
_NOT_SEARCHED = ('val_dataloader', 'val_evaluator', 'val_cfg', 'randomness',
                 'train_cfg.val_interval', 'train_cfg.val_begin')
DEFAULT_METRIC = {'mmseg': 'mIoU', 'mmpretrain': 'accuracy/top1'}

# A path component naming a test split: test, Test, test.txt, test2017,
# img_dir/test, testing, testset, test-dev; not latest, contest, testimony.
_TEST_WORD = re.compile(r'(?<![a-z])test(?:s|ing|set|data|dev|std)?'
                        r'(?![a-z])')


# --- --cfg-options -----------------------------------------------------------
def parse_cfg_options(options: Sequence[str]) -> dict:
    """``k=v`` strings parsed exactly as tools/train.py parses them."""
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument('--o', nargs='+', action=DictAction, default={})
    try:
        return dict(parser.parse_args(['--o', *options]).o) if options \
            else {}
    except (SystemExit, ValueError) as err:
        raise UsageError(f'--cfg-options {" ".join(options)!r} could not be '
                         f'parsed ({err}); use key=value pairs.')


def option_string(key: str, value) -> str:
    """``key=value`` as tools/train.py's --cfg-options reads it back."""
    return f'{key}={value!r}' if isinstance(value, float) else \
        f'{key}={value}'


def _overlaps(key: str, other: str) -> bool:
    a, b = key.split('.'), other.split('.')
    n = min(len(a), len(b))
    return a[:n] == b[:n]


def check_option_keys(keys: Sequence[str], what: str,
                      searched: bool = False) -> None:
    """Refuse keys touching the test side (or, in the space, the val side)."""
    for key in keys:
        for bad in _NEVER:
            if _overlaps(key, bad):
                raise UsageError(
                    f'tune on val only: {what} key {key!r} touches '
                    f'`{bad}`. A sweep trains on the train split and reads '
                    f'the validation metric; it never changes the test side '
                    f'(or the work dir, which the tool sets). Remove the '
                    f'key; test the best config afterwards with '
                    f'tools/test.py.')
        if _overlaps(key, 'randomness.seed'):
            raise UsageError(f'{what} key {key!r} sets the random seed; '
                             f'use --seeds S [S ...] instead.')
        if searched:
            for bad in _NOT_SEARCHED:
                if _overlaps(key, bad):
                    raise UsageError(
                        f'space key {key!r} changes `{bad}`: trials must be '
                        f'compared on the same validation data and '
                        f'schedule. Set it once with --cfg-options (val '
                        f'splits only) instead of searching it.')


# --- the search space --------------------------------------------------------
def _number(spec, field, key, integer=False):
    value = spec[field]
    ok = isinstance(value, int) if integer else \
        isinstance(value, (int, float))
    if isinstance(value, bool) or not ok or not math.isfinite(value):
        kind = 'an integer' if integer else 'a finite number'
        raise UsageError(f'space key {key!r}: `{field}` must be {kind}, got '
                         f'{value!r}.')
    return value


def _check_spec(key: str, spec) -> dict:
    if not isinstance(spec, dict):
        raise UsageError(
            f'space key {key!r}: expected a dict such as dict(type='
            f"'float', low=1e-4, high=1e-2, log=True), got {spec!r}.")
    spec = dict(spec)
    kind = spec.get('type')
    if kind not in TYPES:
        raise UsageError(f'space key {key!r}: unknown type {kind!r}; use one '
                         f'of {", ".join(map(repr, TYPES))}.')
    extra = set(spec) - TYPES[kind] - {'type'}
    if extra:
        raise UsageError(f'space key {key!r} ({kind}): unknown field(s) '
                         f'{", ".join(sorted(extra))}; allowed: '
                         f'{", ".join(sorted(TYPES[kind]))}.')
    if kind == 'categorical':
        choices = spec.get('choices')
        if not isinstance(choices, (list, tuple)) or not choices:
            raise UsageError(f'space key {key!r}: categorical needs a '
                             f'non-empty list `choices`.')
        for c in choices:
            if c is not None and not isinstance(c, (bool, int, float, str)):
                raise UsageError(
                    f'space key {key!r}: choice {c!r} is a '
                    f'{type(c).__name__}; choices must be None, bool, int, '
                    f'float or str (search a list-valued setting through '
                    f'one of its elements, e.g. key.0).')
        if len({(type(c), c) for c in choices}) != len(choices):
            raise UsageError(f'space key {key!r}: repeated choices in '
                             f'{list(choices)!r}.')
        return dict(type=kind, choices=list(choices))
    integer = kind == 'int'
    for field in ('low', 'high'):
        if field not in spec:
            raise UsageError(f'space key {key!r} ({kind}) needs `{field}`.')
    low = _number(spec, 'low', key, integer)
    high = _number(spec, 'high', key, integer)
    log = spec.get('log', False)
    if not isinstance(log, bool):
        raise UsageError(f'space key {key!r}: `log` must be True or False.')
    if low > high or (low == high and not integer):
        raise UsageError(f'space key {key!r}: bounds low={low!r} > high='
                         f'{high!r}; need low < high.' if low > high else
                         f'space key {key!r}: low == high == {low!r}; a '
                         f'fixed value belongs in --cfg-options.')
    if log and low <= 0:
        raise UsageError(f'space key {key!r}: log=True needs low > 0 (got '
                         f'{low!r}).')
    out = dict(type=kind, low=low, high=high, log=log)
    step = spec.get('step')
    if step is not None:
        step = _number(spec, 'step', key, integer)
        if step <= 0:
            raise UsageError(f'space key {key!r}: step must be > 0.')
        if log and (not integer or step != 1):
            raise UsageError(f'space key {key!r}: log=True cannot be '
                             f'combined with a step (optuna samples a log '
                             f'scale continuously).')
        if step > high - low and high != low:
            raise UsageError(f'space key {key!r}: step {step!r} is larger '
                             f'than high - low = {high - low!r}.')
        out['step'] = step
    elif integer:
        out['step'] = 1
    return out


def _lookup(cfg, key: str) -> Optional[str]:
    """None when the dotted key exists in cfg, else why not."""
    node = cfg.to_dict() if isinstance(cfg, Config) else cfg
    walked = []
    for part in key.split('.'):
        if isinstance(node, (list, tuple)):
            if not part.isdigit() or int(part) >= len(node):
                return (f'`{".".join(walked)}` is a list of {len(node)}; '
                        f'{part!r} is not an index of it')
            node = node[int(part)]
        elif isinstance(node, dict):
            if part not in node:
                where = '.'.join(walked) or 'the config'
                close = difflib.get_close_matches(part, [str(k) for k in
                                                         node], n=3)
                hint = f' (did you mean {" / ".join(close)}?)' if close \
                    else f' (it has: {", ".join(sorted(map(str, node)))})'
                return f'{where} has no {part!r}{hint}'
            node = node[part]
        else:
            shown = repr(node)
            shown = shown if len(shown) < 60 else shown[:56] + ' ...'
            return (f'`{".".join(walked)}` is {shown}, not a dict or a '
                    f'list')
        walked.append(part)
    return None


def load_space(path: str, cfg: Config, config_path: str,
               cfg_options: dict) -> Dict[str, dict]:
    """The validated search space of a SPACE.py file (key -> spec)."""
    if not osp.isfile(path):
        raise UsageError(f'--space file {path!r} does not exist.')
    if not path.endswith('.py'):
        raise UsageError(f'--space {path!r} is not a .py file.')
    try:
        space = Config.fromfile(path).get('space')
    except Exception as err:  # syntax errors, bad _base_
        raise UsageError(f'--space {path}: cannot read it ({err}).')
    if not isinstance(space, dict) or not space:
        raise UsageError(
            f"--space {path} must define a non-empty dict `space`, e.g. "
            f"space = {{'optim_wrapper.optimizer.lr': dict(type='float', "
            f"low=1e-4, high=1e-2, log=True)}}.")
    out = {}
    for key, spec in space.items():
        if not isinstance(key, str) or not key or \
                any(not p for p in key.split('.')):
            raise UsageError(f'space key {key!r}: use the dotted form of '
                             f'--cfg-options, e.g. '
                             f'optim_wrapper.optimizer.lr.')
        check_option_keys([key], 'space', searched=True)
        for opt in cfg_options:
            if _overlaps(key, opt):
                raise UsageError(f'space key {key!r} is also set by '
                                 f'--cfg-options {opt}=...; drop one of '
                                 f'them.')
        out[key] = _check_spec(key, spec)
        missing = _lookup(cfg, key)
        if missing:
            raise UsageError(
                f'space key {key!r} does not exist in {config_path}: '
                f'{missing}. Fix the key; for an argument the config leaves '
                f'at its default, write it into the config or pass '
                f'--cfg-options {key}=<default> so that it exists.')
        for value in grid_values(out[key]) if out[key]['type'] != 'float' \
                else (out[key]['low'], out[key]['high']):
            back = parse_cfg_options([option_string(key, value)]).get(key)
            if type(back) is not type(value) or back != value:
                raise UsageError(
                    f'space key {key!r}: value {value!r} would reach '
                    f'tools/train.py as {back!r} through --cfg-options; '
                    f'use values without commas, brackets or quotes.')
    return out


def grid_values(spec: dict) -> list:
    """The values a grid search enumerates (categorical, or stepped int)."""
    if spec['type'] == 'categorical':
        return list(spec['choices'])
    if spec['type'] == 'int':
        return list(range(spec['low'], spec['high'] + 1, spec['step']))
    raise ValueError(spec)


def check_grid(space: Dict[str, dict]) -> Dict[str, list]:
    floats = [k for k, s in space.items() if s['type'] == 'float']
    if floats:
        raise UsageError(f'--grid enumerates categorical (and int) keys; '
                         f'{", ".join(floats)} is a float range. Make it '
                         f'categorical with the values to try, or drop '
                         f'--grid for TPE.')
    return {k: grid_values(s) for k, s in space.items()}


def digest(obj) -> str:
    text = json.dumps(obj, sort_keys=True, default=repr)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def config_digest(cfg: Config) -> str:
    """A hash of the merged config (bases included), stable across runs."""
    try:
        return digest(cfg.to_dict())
    except TypeError:  # mixed-type keys cannot be sorted
        return hashlib.sha256(cfg.pretty_text.encode()).hexdigest()[:16]


# --- val only ----------------------------------------------------------------
def _leaves(ds):
    """The leaf dataset configs of a (wrapped, concatenated) dataset."""
    if isinstance(ds, (list, tuple)):
        for d in ds:
            yield from _leaves(d)
    elif isinstance(ds, dict):
        if isinstance(ds.get('datasets'), (list, tuple)):
            yield from _leaves(ds['datasets'])
        elif isinstance(ds.get('dataset'), dict):
            yield from _leaves(ds['dataset'])
        else:
            yield ds


def _parts(path: str) -> List[str]:
    return [p for p in str(path).replace('\\', '/').split('/')
            if p not in ('', '.')]


def data_paths(loader) -> List[str]:
    """The files and folders a dataloader config reads: data_root joined with
    ann_file and every data_prefix entry (the root alone when neither)."""
    paths = []
    ds = loader.get('dataset') if isinstance(loader, dict) else None
    for leaf in _leaves(ds):
        root = str(leaf.get('data_root') or '')
        own = []
        ann = leaf.get('ann_file')
        if isinstance(ann, str) and ann:
            own.append(ann)
        prefix = leaf.get('data_prefix')
        if isinstance(prefix, str) and prefix:
            own.append(prefix)
        elif isinstance(prefix, dict):
            own += [v for v in prefix.values() if isinstance(v, str) and v]
        paths += [osp.normpath(osp.join(root, p)) for p in own] or \
            ([osp.normpath(root)] if root else [])
    return paths


def _splits(loader) -> List[str]:
    ds = loader.get('dataset') if isinstance(loader, dict) else None
    return [str(leaf['split']) for leaf in _leaves(ds)
            if isinstance(leaf.get('split'), str)]


def _unshared(path: str, others: Sequence[str]) -> List[str]:
    """The components of path after its longest common start with others:
    a folder the train data shares is a location, not a split name."""
    parts, common = _parts(path), 0
    for other in others:
        o, n = _parts(other), 0
        while n < min(len(parts), len(o)) and parts[n] == o[n]:
            n += 1
        common = max(common, n)
    return parts[common:]


def _real(paths):
    return [osp.realpath(p) if osp.exists(p) else p for p in paths]


def names_test_split(loader, train_paths: Sequence[str]) -> List[str]:
    """What in a dataloader config names a test split ('' when nothing)."""
    found = [f'split={s!r}' for s in _splits(loader)
             if _TEST_WORD.search(s.lower())]
    paths = data_paths(loader)
    for literal, real, train in ((paths, paths, train_paths),
                                 (paths, _real(paths), _real(train_paths))):
        for shown, path in zip(literal, real):
            words = [p for p in _unshared(path, train)
                     if _TEST_WORD.search(p.lower())]
            if words:
                note = '' if path == shown else f' (-> {path})'
                found.append(f'{shown}{note}')
    return sorted(set(found))


def check_val_only(cfg: Config, raw_cfg: Config, config_path: str) -> None:
    """Refuse a config whose validation data is a test split.

    ``cfg`` is the config with --cfg-options merged, ``raw_cfg`` the file
    alone.  Refused: (a) the val dataset names a test split (``split=``, or
    a component of data_root/ann_file/data_prefix that the train data does
    not share is test, testing, test.txt, test2017, ..., also after
    resolving symlinks); (b) the val data overlaps test_dataloader's data
    while that names a test split, or while the config file alone keeps them
    apart (the options pointed val at the test data).
    """
    for key in ('val_dataloader', 'val_cfg', 'val_evaluator'):
        if cfg.get(key) is None:  # val_cfg = dict() is a default ValLoop
            raise UsageError(
                f'{config_path} has no {key}: a sweep ranks trials by the '
                f'validation metric, so the config needs a validation loop '
                f'on a val split.')
    train = data_paths(cfg.get('train_dataloader') or {})
    val, test = cfg.val_dataloader, cfg.get('test_dataloader') or {}
    names = names_test_split(val, train)
    if names:
        raise UsageError(
            f'tune on val only: the validation data of {config_path} names '
            f'a test split ({"; ".join(names)}). Choosing hyper-parameters '
            f'on the test split leaks it into the result. Point '
            f'val_dataloader at a validation split (e.g. hold out part of '
            f'train) and keep test for the final tools/test.py run.')
    shared = set(_real(data_paths(val))) & set(_real(data_paths(test)))
    if not shared:
        return
    test_names = names_test_split(test, train)
    raw_shared = set(_real(data_paths(raw_cfg.get('val_dataloader') or {})))\
        & set(_real(data_paths(raw_cfg.get('test_dataloader') or {})))
    if test_names or not raw_shared:
        why = f'which names a test split ({"; ".join(test_names)})' \
            if test_names else 'which the config file keeps apart from val'
        raise UsageError(
            f'tune on val only: the validation data reads '
            f'{", ".join(sorted(shared))}, the data of test_dataloader, '
            f'{why}. Do not point val_dataloader at the test data; sweep on '
            f'a validation split.')


def check_val_schedule(cfg: Config) -> Optional[str]:
    """Refuse a schedule that never validates; a warning when the last
    validation is not at the end of training (None when fine)."""
    train_cfg = cfg.get('train_cfg') or {}
    for unit in ('iters', 'epochs'):
        total = train_cfg.get(f'max_{unit}')
        interval = train_cfg.get('val_interval', 1)
        if isinstance(total, int) and isinstance(interval, int):
            if interval > total:
                raise UsageError(
                    f'train_cfg.val_interval={interval} > max_{unit}='
                    f'{total}: no validation would run and no trial would '
                    f'have a metric. Set train_cfg.val_interval={total}.')
            if total % interval:
                return (f'max_{unit}={total} is not a multiple of '
                        f'val_interval={interval}: trials are scored on the '
                        f'validation at {unit[:-1]} '
                        f'{total - total % interval}, not the end.')
    return None


# --- a run's metric ----------------------------------------------------------
def read_metric(work_dir: str, metric: str):
    """(value, None) from the last validation record of mmengine's
    ``vis_data/scalars.json`` in work_dir, or (None, why not)."""
    logs = sorted(glob.glob(osp.join(work_dir, '*', 'vis_data',
                                     'scalars.json')))
    if not logs:
        return None, f'no */vis_data/scalars.json in {work_dir}'
    value, seen = None, set()
    with open(logs[-1]) as f:
        for line in f:
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if metric in record:
                value = record[metric]
            elif 'loss' not in record and 'lr' not in record:
                seen |= set(record) - {'step', 'iter', 'epoch',
                                       'data_time', 'time'}
    if value is None:
        logged = f'; validation logged {", ".join(sorted(seen))}' if seen \
            else '; no validation record (did validation run?)'
        return None, f'{metric!r} not in {logs[-1]}{logged}'
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None, f'{metric!r} is {value!r}, not a number'
    if not math.isfinite(value):
        return None, f'{metric!r} is {value}'
    return value, None


# --- the table ---------------------------------------------------------------
def _fmt(value) -> str:
    if isinstance(value, float):
        return f'{value:.4g}'
    return '-' if value is None else str(value)


def trial_table(rows: List[dict], keys: Sequence[str],
                seeds: Sequence[int], best: Optional[int]) -> str:
    """Markdown: one row per trial (dicts with number, params, seeds, mean,
    state, seconds); the best trial's number carries a star."""
    head = ['trial'] + list(keys) + [f'seed {s}' for s in seeds] + \
        ['mean', 'state', 'seconds']
    lines = ['| ' + ' | '.join(head) + ' |',
             '|' + ' --- |' * len(head)]
    for row in rows:
        cells = [f'{row["number"]}*' if row['number'] == best
                 else str(row['number'])]
        cells += [_fmt(row['params'].get(k)) for k in keys]
        cells += [_fmt(row['seeds'].get(str(s))) for s in seeds]
        cells += [_fmt(row['mean']), row['state'],
                  _fmt(None if row['seconds'] is None
                       else round(row['seconds']))]
        lines.append('| ' + ' | '.join(c.replace('|', '\\|') for c in cells)
                     + ' |')
    return '\n'.join(lines)


__all__ = ['load_space', 'check_grid', 'grid_values', 'check_val_only',
           'check_val_schedule', 'check_option_keys', 'parse_cfg_options',
           'option_string', 'read_metric', 'trial_table', 'config_digest',
           'digest', 'data_paths', 'names_test_split', 'DEFAULT_METRIC']
