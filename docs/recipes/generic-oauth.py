# Login recipe: any OAuth2 / OpenID Connect provider (Keycloak, Authentik,
# Azure AD, your institute's SSO), with access and admin rights by group.
#
# Register a confidential client with the redirect URI
# https://<your hub>/hub/oauth_callback, then set in the hub's environment:
# OAUTH_CLIENT_ID, OAUTH_CLIENT_SECRET, OAUTH_CALLBACK_URL, OAUTH2_AUTHORIZE_URL,
# OAUTH2_TOKEN_URL, OAUTH2_USERDATA_URL. The URLs below are Keycloak's shape:
#   https://sso.example.org/realms/<realm>/protocol/openid-connect/auth|token|userinfo
import os

c = get_config()  # noqa: F821 - provided by JupyterHub when it loads this file

c.JupyterHub.authenticator_class = "generic-oauth"
c.GenericOAuthenticator.login_service = os.environ.get("OAUTH2_LOGIN_SERVICE", "Institute login")
c.GenericOAuthenticator.oauth_callback_url = os.environ["OAUTH_CALLBACK_URL"]
c.GenericOAuthenticator.client_id = os.environ["OAUTH_CLIENT_ID"]
c.GenericOAuthenticator.client_secret = os.environ["OAUTH_CLIENT_SECRET"]
c.GenericOAuthenticator.authorize_url = os.environ["OAUTH2_AUTHORIZE_URL"]
c.GenericOAuthenticator.token_url = os.environ["OAUTH2_TOKEN_URL"]
c.GenericOAuthenticator.userdata_url = os.environ["OAUTH2_USERDATA_URL"]
c.GenericOAuthenticator.scope = ["openid", "profile", "email"]
# The claim that becomes the hub user name. Pick one that never changes for a
# person (see "What a rename means" in the docs).
c.GenericOAuthenticator.username_claim = "preferred_username"

# Groups come from the provider's "groups" claim at every login. This replaces
# ALL of the user's hub groups, including jupyterhub_ext's (docker-sock,
# jupyterhub-ext-admins, ...): grant those in the provider, not on the admin page.
# (set on Authenticator, where jupyterhub_ext's setup looks for it too)
c.Authenticator.manage_groups = True
c.GenericOAuthenticator.auth_state_groups_key = "oauth_user.groups"
c.GenericOAuthenticator.allowed_groups = {"jupyterhub-users", "jupyterhub-ext-admins"}
# Members of this provider group become hub admins AND get jupyterhub_ext's
# admin role (it is bound to the hub group of the same name).
c.GenericOAuthenticator.admin_groups = {"jupyterhub-ext-admins"}
