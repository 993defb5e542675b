"""Generation: prompts, sampling, the decode loop and the runners it drives."""
