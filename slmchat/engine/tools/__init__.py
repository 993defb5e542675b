"""Tools over a model: quantize, export (safetensors, GGUF), perplexity."""
