"""Mappings: pure translations between the canonical envelope and each department system."""
