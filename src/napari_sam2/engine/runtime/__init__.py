"""Numerics and speed: devices, precision, allocator settings, encoder trims, warm-up,
``torch.compile`` and int8 (opt-in) and the LLVM guard."""
