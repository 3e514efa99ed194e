"""Test support shared by the test suites: real taas-server processes, throwaway PostgreSQL."""
