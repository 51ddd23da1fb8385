"""Fine-tuning tasks: featurize, head, loss, metric and post-processing per task family."""
