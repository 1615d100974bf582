"""Pre-training and fine-tuning as Lightning modules, and the pieces they share."""
