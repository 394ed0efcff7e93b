"""Notification broadcast to running JupyterLab servers.

``broadcast``: settings and request validation (pure); ``tokens``: one
delivery token per target server; ``fanout``: concurrent delivery;
``history``: recent broadcasts on disk; ``quota_notify``: one notification
to one user's servers (quota and culling warnings); ``cli``: the
``jupyterhub-ext-notify`` command.
"""
