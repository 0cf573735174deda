"""The `ConfigurableResource` classes: one per external service or tunable rule set.

Which instance each resource key gets, bound to environment variables, is
`unde_dagster.defs.resources`.
"""
