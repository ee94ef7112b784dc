"""A hook that records what mmengine's logger leaves out under DDP (it logs
rank 0 only): every rank's own loss per iteration
(``losses_rank<R>.jsonl``) and trainable parameters before and after
training (``params_{init,final}_rank<R>.pth``), in the work dir.  For the
loss-parity test, tests/tools/test_scaling.py."""
import json
import os.path as osp

import torch
from mmengine.dist import get_rank
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmengine.registry import HOOKS


@HOOKS.register_module()
class RankLossesHook(Hook):
    priority = 'LOWEST'

    def after_train_iter(self, runner, batch_idx, data_batch=None,
                         outputs=None):
        path = osp.join(runner.work_dir, f'losses_rank{get_rank()}.jsonl')
        with open(path, 'a') as f:
            f.write(json.dumps(dict(iter=runner.iter + 1,
                                    loss=float(outputs['loss']))) + '\n')

    def before_train(self, runner):
        self._save_params(runner, 'init')

    def after_train(self, runner):
        self._save_params(runner, 'final')

    @staticmethod
    def _save_params(runner, tag):
        model = runner.model.module if is_model_wrapper(runner.model) \
            else runner.model
        torch.save({name: p.detach().clone()
                    for name, p in model.named_parameters()
                    if p.requires_grad},
                   osp.join(runner.work_dir,
                            f'params_{tag}_rank{get_rank()}.pth'))
