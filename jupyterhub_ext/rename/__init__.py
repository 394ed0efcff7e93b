"""Rename a user together with their login and their data.

``runner``: plan, checks, task registry, the copy → verify → commit → remove
transaction with its rollback, and recovery at hub start; ``journal``: the
database table of renames and the listeners on a user's name; ``volcopy``:
copy and verify one volume with helper containers; ``treeverify``: the tree
description that runs inside the verify helper.
"""
