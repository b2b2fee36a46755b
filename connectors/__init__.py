"""Connectors: one module per transport kind behind connectors.base.Connector."""
