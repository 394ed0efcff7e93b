"""``GET /hub/api/users/{name}/grants``: what each of a user's servers gets, and why.

For each server: its profile, image, memory and CPU limits, GPU device IDs,
Docker socket and privileged mode (a running server's answer is read from its
container; a stopped one's is what its next start would get), and which of
the user's groups granted what. Users read their own (``read:servers`` on
self, which every user has); admins and services with ``read:servers`` on
everyone read anyone's. The home page's "What you get" panel uses it.
"""

from __future__ import annotations

import json

from jupyterhub.apihandlers.base import APIHandler
from jupyterhub.scopes import needs_scope
from tornado import web

from jupyterhub_ext.profiles import rules as P
from jupyterhub_ext.profiles.mixin import ProfilesMixin
from jupyterhub_ext.spawner import grants


class GrantsAPIHandler(APIHandler):
    @needs_scope("read:servers")
    async def get(self, user_name: str) -> None:
        user = self.find_user(user_name)
        if user is None:
            raise web.HTTPError(404, f"No such user: {user_name}")
        names = [""] + sorted(n for n in user.orm_spawners if n)
        servers = []
        spawner = None
        for name in names:
            sp = user.spawners[name]
            if isinstance(sp, ProfilesMixin):
                spawner = spawner or sp
                servers.append(await sp.grants_model())
        if spawner is None:
            raise web.HTTPError(400, "This hub's spawner is not jupyterhub_ext's ExtDockerSpawner.")
        groups = sorted(grants.user_group_names(self.db, user.id))
        profiles = spawner.parsed_profiles
        mine = P.allowed(profiles, groups)
        default = P.default_for(profiles, groups)
        self.write(
            json.dumps(
                {
                    "user": user.name,
                    "groups": groups,
                    "profiles": [
                        {
                            **p.model(),
                            "resources": p.resources(),
                            "granted_by": p.granted_by(groups),
                        }
                        for p in mine
                    ],
                    "default_profile": default.slug if default else None,
                    "servers": servers,
                }
            )
        )
