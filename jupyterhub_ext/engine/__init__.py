"""The one Docker layer: every call to a Docker engine goes through this package.

- ``dockerpool``: one bounded thread pool and one docker-py client per engine,
  so the hub's event loop never waits on the engine;
- ``calls``: short calls in that pool, long ones (a helper's ``wait``) in
  their own pool, and root helper containers run to their end;
- ``errors``: Docker's exceptions, and one way to turn them into a message;
- ``ownership``: the one rule that says whose a volume or container is.

No other module imports ``docker``: a test greps for it.
"""

from __future__ import annotations

from docker import APIClient
from docker.types import DeviceRequest, Mount

__all__ = ["APIClient", "DeviceRequest", "Mount"]
