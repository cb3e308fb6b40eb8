"""The asyncio client: core.py is written by hand, services.py is generated from the proto
descriptors (scripts/generate_client.py); ../_sync is derived from both by unasync."""
