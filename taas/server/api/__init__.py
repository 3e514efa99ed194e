"""HTTP layer: auth, envelopes, query parsing, errors. Business rules live in services."""
