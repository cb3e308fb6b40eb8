"""Media storage adapters (docs/media.md)."""
