"""Pure logic of the image factory: versions, manifests, OVF, checksums, lookups, validation.

Nothing in this package imports Pulumi, so every function can be tested directly and
called from the commands that the Pulumi components run.
"""
