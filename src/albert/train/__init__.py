"""Training: optimizers, schedules, the one loop, pretraining."""
