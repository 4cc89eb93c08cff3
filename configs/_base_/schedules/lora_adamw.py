# AdamW with linear warm-up then cosine decay, iteration based.
# The runner builds param_scheduler from lr_schedule and train_cfg.max_iters, so a child
# config only changes max_iters (set param_scheduler explicitly to take over).
train_cfg = dict(type='IterBasedTrainLoop', max_iters=2000, val_interval=500)
val_cfg = None
test_cfg = None

optim_wrapper = dict(
    # no `type`: the runner picks DeepSpeedOptimWrapper / AmpOptimWrapper / OptimWrapper
    optimizer=dict(type='AdamW', lr=4e-5, betas=(0.9, 0.999), weight_decay=0.05),
    clip_grad=dict(max_norm=1.0),
    accumulative_counts=1,
)
lr_schedule = dict(warmup_ratio=0.03, warmup_start_factor=1e-3, eta_min_ratio=0.0)
param_scheduler = None
