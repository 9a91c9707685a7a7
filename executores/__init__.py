"""Built-in executores. Each module registers one plugin when imported."""
