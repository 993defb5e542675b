"""Loading models: what a folder holds, the spec, the loaders, the default model, discovery."""
