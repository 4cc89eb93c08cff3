# Video fine-tuning: clips of 5 frames of angiography sequences with one shared [SEG] (the
# official Sa2VA video recipe: one 448-px tile per frame, the [SEG] embedding broadcast to every
# frame, each frame decoded independently with no_mem_embed, SAM2 memory frozen and unused in
# training; mask loss on labelled frames only). Data: canonical layout, frames grouped into videos
# by frames.csv (stem,video,frame) or the stem rule <video>_f<index> (datasets/video_dataset.py).
#   SA2VA_MODEL_PATH=/path/to/Sa2VA-InternVL3-2B VESSEL_DATA_ROOT=/path/to/sequences \
#   tools/dist_train.sh configs/vessel_lora_video.py 8
# Then segment whole sequences with SAM2 memory:
#   python tools/predict.py work_dirs/vessel_lora_video/best_*.pth FRAMES_DIR out/ --video
_base_ = ['./vessel_lora.py']

data_root = '{{$VESSEL_DATA_ROOT:data/vessel_sequences}}'
model_path = '{{$SA2VA_MODEL_PATH:checkpoints/Sa2VA-InternVL3-2B}}'
clip_len = 5          # frames per clip (official: 5)
frame_stride = 1      # frames between clip frames

model = dict(type='Sa2VAVideoVesselModel', model_path=model_path)
# EpochStreamSampler: DefaultSampler's order with the epoch in each index, so every epoch draws fresh
# clip starts (in every worker), a resumed run draws the same ones (datasets/video_dataset.py), and the
# loader never restarts at an epoch boundary (datasets/epoch_samplers.py)
train_dataloader = dict(
    sampler=dict(type='sa2va_vessel.EpochStreamSampler', shuffle=True), collate_fn=dict(type='sa2va_vessel.video_collate'),
    dataset=dict(type='VesselVideoDataset', _delete_=True, data_root=data_root, split='train',
                 model_path=model_path, clip_len=clip_len, frame_stride=frame_stride, clips_per_video=8))
val_dataloader = dict(
    collate_fn=dict(type='sa2va_vessel.video_collate'),
    dataset=dict(type='VesselVideoDataset', _delete_=True, data_root=data_root, split='val',
                 model_path=model_path, clip_len=clip_len, frame_stride=frame_stride, random_question=False))
# the overlay hook draws single images; video overlays come from tools/predict.py --video
default_hooks = dict(val_visualization=None)
