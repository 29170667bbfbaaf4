"""Fine-tuning and evaluation: annotated data, the training loop, the fine-tune run and its
card, and scoring a model against reference labels."""
