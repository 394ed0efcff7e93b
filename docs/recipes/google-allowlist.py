# Login recipe: Google, only for people on an allow list you keep in a file.
#
# Create an OAuth client ("Web application") in the Google Cloud console with
# the redirect URI https://<your hub>/hub/oauth_callback, then set in the hub's
# environment: OAUTH_CLIENT_ID, OAUTH_CLIENT_SECRET, OAUTH_CALLBACK_URL and
# JUPYTERHUB_ALLOWED_USERS_FILE (one e-mail address per line, # for comments).
# Hub user names are the e-mail addresses. Edit the file and restart the hub
# to add or remove someone.
import os

c = get_config()  # noqa: F821 - provided by JupyterHub when it loads this file

c.JupyterHub.authenticator_class = "google"
c.GoogleOAuthenticator.oauth_callback_url = os.environ["OAUTH_CALLBACK_URL"]
c.GoogleOAuthenticator.client_id = os.environ["OAUTH_CLIENT_ID"]
c.GoogleOAuthenticator.client_secret = os.environ["OAUTH_CLIENT_SECRET"]
c.GoogleOAuthenticator.scope = ["openid", "email"]


def read_allow_list(path: str) -> set[str]:
    with open(path, encoding="utf-8") as f:
        lines = (line.split("#", 1)[0].strip().lower() for line in f)
        return {line for line in lines if line}


allowed = read_allow_list(os.environ["JUPYTERHUB_ALLOWED_USERS_FILE"])
c.GoogleOAuthenticator.allowed_users = allowed
# Only the list decides; a user removed from it cannot log in any more.
c.GoogleOAuthenticator.allow_existing_users = False

admins = set(os.environ.get("JUPYTERHUB_ADMIN_USERS", "").split(",")) - {""}
c.Authenticator.admin_users = admins
