# A vessel data set in the canonical layout (images/ masks/ [fov/] splits/), e.g. written by
# tools/prepare_dataset.py or tools/make_synthetic_vessels.py. VESSEL_DATA_ROOT points at it.
# Collate functions carry the scope: mmengine looks them up in its root registry directly.
data_root = '{{$VESSEL_DATA_ROOT:data/vessels}}'
tokenizer_from = '{{$SA2VA_MODEL_PATH:checkpoints/Sa2VA-InternVL3-2B}}'  # tokenizer + template

train_dataloader = dict(
    batch_size=1,
    num_workers=4,
    persistent_workers=True,
    sampler=dict(type='sa2va_vessel.EpochStreamSampler', shuffle=True),  # never restarts (datasets/epoch_samplers.py)
    collate_fn=dict(type='sa2va_vessel.vessel_collate'),
    dataset=dict(type='VesselSegDataset', data_root=data_root, split='train', model_path=tokenizer_from,
                 max_dynamic_patch=12))
val_dataloader = dict(
    batch_size=1,
    num_workers=2,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=False),
    collate_fn=dict(type='sa2va_vessel.vessel_collate'),
    dataset=dict(type='VesselSegDataset', data_root=data_root, split='val', model_path=tokenizer_from,
                 max_dynamic_patch=12, random_question=False))
val_evaluator = dict(type='VesselSegMetric')
