"""Docker Swarm: the same servers as ExtDockerSpawner, as Swarm services on several hosts.

``servicespec``: pure translation of a server's container (as ExtDockerSpawner
builds it) into a Swarm service, the one gate for what Swarm cannot do, and
readers of what the engine reports (tasks, nodes, generic resources);
``spawner``: ExtSwarmSpawner (entry point ``ext-swarm``), which pins each
user's server to the node holding their local volumes.
"""
