"""Model acquisition: the size/version registry, checkpoints, loading, state dicts, the
transformers route and checkpoint conversion (leaf module: :mod:`.registry`)."""
