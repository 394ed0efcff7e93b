# Login recipe: NativeAuthenticator with open self-signup (no admin approval).
#
# Anyone who can reach the hub gets an account and a container at once.
# Only use this on a network you trust (a VPN, a classroom LAN).
import jupyterhub_ext

c = get_config()  # noqa: F821 - provided by JupyterHub when it loads this file

c.JupyterHub.authenticator_class = "native"
c.NativeAuthenticator.enable_signup = True
c.NativeAuthenticator.open_signup = True  # signed up == approved

# Admins (no default name): create their accounts first, the hub refuses to
# start until then:  jupyterhub-ext-create-account NAME --password-file FILE
c.Authenticator.admin_users = jupyterhub_ext.admin_users_from_env("JUPYTERHUB_ADMIN_USERS")
c.Authenticator.allow_all = True

c.NativeAuthenticator.minimum_password_length = 10
c.NativeAuthenticator.check_common_password = True
