"""Per-user volume sets, shared and archive storage, secrets, create / delete / reset.

``volumes``: declaration, validation, names and labels (pure); ``archive``:
read-only union of archive directories; ``secretopts``: ``${env:…}`` and
``${file:…}`` driver options; ``volperms``: owner and mode of a new volume;
``volume_ops``: list and reset one user's volumes; ``mixin``: the spawner's
side (create before start, clean up on user deletion, checks at hub start).
"""
