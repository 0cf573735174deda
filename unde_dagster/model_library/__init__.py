"""AI model library: one fal.ai `fal-ai/flux/dev` image per template (model-generator seed)."""
