"""Inbound provider traffic (callbacks) over HTTP."""
