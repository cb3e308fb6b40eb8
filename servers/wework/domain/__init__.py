"""Pure domain of the platform: entities, rules and errors. No I/O, no protobuf, no SQL."""
