"""Business rules of taas-server (the "plugin"): no HTTP, never commits."""
