"""Test support: real-service fixtures shared by the integration tests."""
