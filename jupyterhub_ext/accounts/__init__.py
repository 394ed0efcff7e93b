"""Who may have an account: user-name rules and the sign-up boundary.

``usernames``: which names the hub accepts, at every entrance; ``signup``:
accounts for names the config trusts must exist first
(``jupyterhub-ext-create-account``); ``nativecompat``: NativeAuthenticator
working on JupyterHub 6.
"""
