"""Background workers of wework-server: loops that claim small batches of durable rows per shard
(SELECT ... FOR UPDATE SKIP LOCKED), so any number of replicas can run them at once."""
