# Toy config for the preemption / exact-resume tests: dropout (so RNG matters), 16 samples,
# batch 2 -> 8 batches per epoch on one rank, 4 on two; 10 iterations cross epoch boundaries.
_base_ = ['./toy.py']

custom_imports = dict(imports=['tests.toy_model', 'tests.toy_hooks', 'tests.toy_resume'],
                      allow_failed_imports=False)
model = dict(type='ToyDropoutSegModel', dropout=0.3)
train_cfg = dict(type='IterBasedTrainLoop', max_iters=10, val_interval=1000)
default_hooks = dict(
    checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=4, max_keep_ckpts=2))
custom_hooks = [dict(type='LossTraceHook')]
