"""A hook that SIGKILLs training right after the checkpoint of iteration
$MMSHIP_TEST_KILL_AT (CheckpointHook saves in after_train_iter at priority
VERY_LOW; this runs after it): a crash with no clean-up, for the bit-exact
resume test.  Without the variable it does nothing."""
import os
import signal

from mmengine.hooks import Hook
from mmengine.registry import HOOKS


@HOOKS.register_module()
class SigkillAfterIterHook(Hook):
    priority = 'LOWEST'

    def after_train_iter(self, runner, batch_idx, data_batch=None,
                         outputs=None):
        if str(runner.iter + 1) == os.environ.get('MMSHIP_TEST_KILL_AT'):
            os.kill(os.getpid(), signal.SIGKILL)
