"""The matter catalogue: data that says how each combined matter fans out."""
