# Video demo/test config: the tiny random checkpoint (with video memory) and synthetic sequences, CPU.
#   python tools/make_tiny_sa2va.py demo_work/tiny_sa2va_video --video-memory
#   python tools/make_synthetic_vessels.py demo_work/sequences --videos 8 --frames 8 --size 128
#   SA2VA_MODEL_PATH=demo_work/tiny_sa2va_video VESSEL_DATA_ROOT=demo_work/sequences \
#   python tools/train.py configs/vessel_lora_video_tiny.py
_base_ = ['./vessel_lora_tiny.py']

model_path = '{{$SA2VA_MODEL_PATH:demo_work/tiny_sa2va_video}}'
data_root = '{{$VESSEL_DATA_ROOT:demo_work/sequences}}'

model = dict(type='Sa2VAVideoVesselModel', model_path=model_path, sam2_feature_cache_size=0)
train_dataloader = dict(
    batch_size=1, collate_fn=dict(type='sa2va_vessel.video_collate'),
    dataset=dict(type='VesselVideoDataset', _delete_=True, data_root=data_root, split='train',
                 model_path=model_path, clip_len=3, frame_stride=1, clips_per_video=4))
val_dataloader = dict(
    batch_size=1, collate_fn=dict(type='sa2va_vessel.video_collate'),
    dataset=dict(type='VesselVideoDataset', _delete_=True, data_root=data_root, split='val',
                 model_path=model_path, clip_len=3, frame_stride=1, random_question=False))
default_hooks = dict(val_visualization=None)
