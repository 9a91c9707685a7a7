"""Built-in escavadores (scrapers). Each module registers one plugin when imported."""
