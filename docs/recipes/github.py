# Login recipe: GitHub, limited to members of your GitHub organisation(s).
#
# Register an OAuth app at https://github.com/settings/developers with the
# callback URL https://<your hub>/hub/oauth_callback, then set in the hub's
# environment: GITHUB_CLIENT_ID, GITHUB_CLIENT_SECRET, OAUTH_CALLBACK_URL and
# JUPYTERHUB_GITHUB_ORGS (comma separated; "org:team" allows one team).
import os

c = get_config()  # noqa: F821 - provided by JupyterHub when it loads this file

c.JupyterHub.authenticator_class = "github"
c.GitHubOAuthenticator.oauth_callback_url = os.environ["OAUTH_CALLBACK_URL"]
c.GitHubOAuthenticator.client_id = os.environ["GITHUB_CLIENT_ID"]
c.GitHubOAuthenticator.client_secret = os.environ["GITHUB_CLIENT_SECRET"]

c.GitHubOAuthenticator.allowed_organizations = set(os.environ["JUPYTERHUB_GITHUB_ORGS"].split(","))
# read:org lets the hub see private organisation memberships too.
c.GitHubOAuthenticator.scope = ["read:user", "read:org"]

# Hub user names are GitHub logins (lower-cased).
c.Authenticator.admin_users = set(os.environ.get("JUPYTERHUB_ADMIN_USERS", "").split(",")) - {""}
