# Toy config for the preemption / exact-resume tests: dropout (so RNG matters), 16 samples,
# batch 2 -> 8 batches per epoch on one rank, 4 on two; 10 iterations cross epoch boundaries.
_base_ = ['./toy.py']

custom_imports = dict(imports=['tests.toy_model', 'tests.toy_hooks', 'tests.toy_resume'], allow_failed_imports=False)
model = dict(type='ToyDropoutSegModel', dropout=0.3)
train_cfg = dict(type='ResumableIterBasedTrainLoop', max_iters=10, val_interval=1000)
# warmup_cosine_schedule(10, warmup_ratio=0.34, warmup_start_factor=0.1)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0, end=3),
    dict(type='CosineAnnealingLR', by_epoch=False, begin=3, end=10, eta_min_ratio=0.0),
]
default_hooks = dict(checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=4, max_keep_ckpts=-1))
checkpoint_keep_last = 2
custom_hooks = [dict(type='LossTraceHook')]
