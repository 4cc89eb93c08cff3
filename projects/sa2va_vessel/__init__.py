"""sa2va-vessel: LoRA fine-tuning of Sa2VA for blood-vessel segmentation."""
