"""`model_library`: fal.ai model images per template; runs on the model-generator host."""
