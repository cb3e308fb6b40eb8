"""gRPC handlers: proto <-> domain mapping and nothing else. No SQL, no business rules."""
