"""Fine-tuning: typed args, data, the training loop, the job over a run folder, its result."""
