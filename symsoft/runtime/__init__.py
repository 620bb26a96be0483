"""Running the emitted kernels from Python: compile (build), cache, load, the ctypes
bindings (ckernels) and the accuracy measurement against the 50-digit reference."""
