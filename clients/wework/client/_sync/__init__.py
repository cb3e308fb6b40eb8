"""The blocking client, derived from ../_async by scripts/generate_client.py (unasync);
only _flavor.py here is written by hand."""
