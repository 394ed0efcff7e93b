# Login recipe: NativeAuthenticator with sign-up switched off.
#
# Use it once everybody has an account (for example after a term's
# registration week): /hub/signup answers 404 and no new account can be made,
# not even by an admin. Existing accounts keep logging in; admins still reset
# passwords on /hub/change-password/<name> and approve or block people on
# /hub/authorize. Switch `enable_signup` back on to onboard someone new.
import jupyterhub_ext

c = get_config()  # noqa: F821 - provided by JupyterHub when it loads this file

c.JupyterHub.authenticator_class = "native"
c.NativeAuthenticator.enable_signup = False

# Admins (no default name); accounts exist already, or make one with
#   jupyterhub-ext-create-account NAME --password-file FILE
c.Authenticator.admin_users = jupyterhub_ext.admin_users_from_env("JUPYTERHUB_ADMIN_USERS")
c.Authenticator.allow_all = True
