# Login recipe: NativeAuthenticator, people sign up, an admin approves them.
#
# Paste above the `jupyterhub_ext.setup(c)` line of jupyterhub_config.py,
# or keep this file next to it and write `load_subconfig("auth.py")` there.
import jupyterhub_ext

c = get_config()  # noqa: F821 - provided by JupyterHub when it loads this file

c.JupyterHub.authenticator_class = "native"

# Anybody who reaches the hub may fill in /hub/signup ...
c.NativeAuthenticator.enable_signup = True
# ... but cannot log in until an admin approves them on /hub/authorize.
c.NativeAuthenticator.open_signup = False

# Admins: your own login names in JUPYTERHUB_ADMIN_USERS (comma separated; no
# default). NativeAuthenticator approves a sign-up under these names at once, so
# create their accounts before the hub opens (it refuses to start until then):
#   jupyterhub-ext-create-account NAME --password-file FILE
c.Authenticator.admin_users = jupyterhub_ext.admin_users_from_env("JUPYTERHUB_ADMIN_USERS")

# NativeAuthenticator does its own approval check; let every approved user in.
c.Authenticator.allow_all = True

# Passwords: at least 10 characters and not in the common-password list;
# lock an account for 10 minutes after 5 failed attempts.
c.NativeAuthenticator.minimum_password_length = 10
c.NativeAuthenticator.check_common_password = True
c.NativeAuthenticator.allowed_failed_logins = 5
c.NativeAuthenticator.seconds_before_next_try = 600
