"""Spawn profiles chosen per group, fair GPU placement and admission.

``rules``: pure decisions on plain values (which profiles a user may pick,
which free GPU a server gets, whether a start is admitted); ``mixin``: the
spawner side (traits, the spawn form, the Docker calls placement needs).
"""
