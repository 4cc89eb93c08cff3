# Toy config with validation and the monitoring hooks (tests/test_monitoring.py).
_base_ = ['./toy.py']

# 5 samples: with 2 ranks and batch 2 the distributed sampler pads, and the metric must drop it.
val_dataloader = dict(
    batch_size=2,
    num_workers=0,
    sampler=dict(type='DefaultSampler', shuffle=False),
    collate_fn=dict(type='toy_collate'),
    dataset=dict(type='ToyVesselDataset', num_samples=5),
)
val_cfg = dict(type='ValLoop', _delete_=True)
val_evaluator = dict(type='VesselSegMetric')
train_cfg = dict(type='ResumableIterBasedTrainLoop', max_iters=6, val_interval=1)
checkpoint_keep_last = 1
default_hooks = dict(
    checkpoint=dict(
        type='CheckpointHook',
        by_epoch=False,
        interval=3,
        max_keep_ckpts=-1,
        save_best='vessel/best_dice',
        rule='greater',
    ),
    best_record=dict(type='BestCheckpointRecordHook'),
    update_norm=dict(type='UpdateNormHook'),
    val_visualization=dict(type='ValVisualizationHook', num_images=2, max_side=64),
)
