"""Validate once before the first training step, so every run records its starting point.

A run whose validation Dice at the end equals the one before training has not learned; with
this baseline in the log and in TensorBoard that is visible at a glance instead of after hours.
"""

from __future__ import annotations

from mmengine.hooks import Hook

from ..registry import HOOKS


@HOOKS.register_module()
class ValidateBeforeTrainHook(Hook):
    """Run the validation loop once in ``before_train`` (skipped when resuming mid-run)."""

    priority = 'LOWEST'

    def before_train(self, runner) -> None:
        if runner.val_loop is None or runner.iter > 0:
            return
        runner.logger.info('validating before training (the baseline the run must beat)')
        runner.val_loop.run()
