# The real model on the tiny checkpoint, for runner tests: no validation, a trace of each step.
_base_ = ['../../configs/vessel_lora_tiny.py']

custom_imports = dict(imports=['tests.toy_hooks'], allow_failed_imports=False)
train_cfg = dict(max_iters=3, val_interval=1000)
# warmup_cosine_schedule(3, 0.03, 1e-3): the shortest warm-up (2) and one cosine step
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-3, by_epoch=False, begin=0, end=2),
    dict(type='CosineAnnealingLR', by_epoch=False, begin=2, end=3, eta_min_ratio=0.0),
]
train_dataloader = dict(batch_size=1)
log_interval = 1
default_hooks = dict(
    validate_before_train=None, logger=dict(interval=1), checkpoint=dict(interval=1000), gradient_guard=dict(interval=1)
)
log_processor = dict(window_size=1)
custom_hooks = [dict(type='RankTraceHook')]
