"""Application services: one use case per method; transactions, permission checks, quotas."""
