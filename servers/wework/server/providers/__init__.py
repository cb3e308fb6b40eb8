"""Adapters to the WeCom protocol provider: one interface, a simulator and an HTTP client."""
