# Login recipe: GitLab (gitlab.com or your own), limited to members of groups.
#
# Create an application (User or Group settings > Applications) with the
# redirect URI https://<your hub>/hub/oauth_callback and the scopes read_user
# and read_api, then set in the hub's environment: GITLAB_URL (e.g.
# https://gitlab.example.org), GITLAB_CLIENT_ID, GITLAB_CLIENT_SECRET,
# OAUTH_CALLBACK_URL and JUPYTERHUB_GITLAB_GROUPS (comma separated paths).
import os

c = get_config()  # noqa: F821 - provided by JupyterHub when it loads this file

c.JupyterHub.authenticator_class = "gitlab"
c.GitLabOAuthenticator.gitlab_url = os.environ.get("GITLAB_URL", "https://gitlab.com")
c.GitLabOAuthenticator.oauth_callback_url = os.environ["OAUTH_CALLBACK_URL"]
c.GitLabOAuthenticator.client_id = os.environ["GITLAB_CLIENT_ID"]
c.GitLabOAuthenticator.client_secret = os.environ["GITLAB_CLIENT_SECRET"]

groups = os.environ["JUPYTERHUB_GITLAB_GROUPS"]
c.GitLabOAuthenticator.allowed_gitlab_groups = set(groups.split(","))
# read_api lets the hub check group membership.
c.GitLabOAuthenticator.scope = ["read_user", "read_api"]

c.Authenticator.admin_users = set(os.environ.get("JUPYTERHUB_ADMIN_USERS", "").split(",")) - {""}
