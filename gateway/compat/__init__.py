"""The breaking-change guard: contracts of this tree against another revision.

revision   the files under contracts/ at a git revision, and in the working tree
check      which file is which contract and whose; compares every pair
schema     JSON Schema rules          openapi   OpenAPI operations and bodies
asyncapi   channels, operations, messages          xsd   XSD declarations, WSDL operations
report     ``Change`` and the printed report
command    ``gateway contracts check --against REF`` (exit 1 on a breaking change)
"""
