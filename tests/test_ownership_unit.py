"""The ownership rule (ownership.py) and the user-name rule, as pure functions.

Boundary guarded: user <-> user data. The property tests state the promise:
for any two distinct accepted user names and any valid volume-set
templates, no Docker name of one equals one of the other's, or the second
user's spawn is refused; never a shared mount.
"""

from __future__ import annotations

from dockerspawner import DockerSpawner
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from jupyterhub_ext.accounts import usernames
from jupyterhub_ext.engine import ownership
from jupyterhub_ext.spawner.hostconfig import container_labels
from jupyterhub_ext.storage.volumes import VolumeSetError, parse_volume_set, volume_labels

escape = DockerSpawner._escape
ALICE = ownership.Owner(1, "alice", "2026-01-01T10:00:00")
BOB = ownership.Owner(2, "bob", "2026-01-02T10:00:00")


def labels_for(owner: ownership.Owner, scope: str = "user") -> dict[str, str]:
    spec = parse_volume_set({"v": {"name": "v-{username}", "mount": "/v"}})[0]
    if scope != "user":
        spec = parse_volume_set({"v": {"name": "vv", "mount": "/v", "scope": scope}})[0]
    return volume_labels(
        spec, owner_id=owner.id, owner_name=owner.name, owner_created=owner.created
    )


def test_own_volume_is_handed_over() -> None:
    assert ownership.volume_refusal("v-alice", labels_for(ALICE), owner=ALICE, scope="user") is None


def test_boundary_user_user_other_owner_refused() -> None:
    why = ownership.volume_refusal("v-alice", labels_for(ALICE), owner=BOB, scope="user")
    assert why and "v-alice" in why and "another user" in why


def test_boundary_user_user_reused_id_refused() -> None:
    # the database gave a new user the id of a deleted one: the creation time differs
    newcomer = ownership.Owner(ALICE.id, "alice", "2026-06-01T09:00:00")
    why = ownership.volume_refusal("v-alice", labels_for(ALICE), owner=newcomer, scope="user")
    assert why and "earlier user with the same id" in why


def test_volume_from_before_created_label_matches_on_id() -> None:
    legacy = {k: v for k, v in labels_for(ALICE).items() if k != ownership.LABEL_OWNER_CREATED}
    assert ownership.volume_refusal("v-alice", legacy, owner=ALICE, scope="user") is None


def test_unlabelled_per_user_volume_needs_adoption() -> None:
    why = ownership.volume_refusal("v-alice", {}, owner=ALICE, scope="user")
    assert why and "adopt_unlabelled" in why
    assert (
        ownership.volume_refusal("v-alice", None, owner=ALICE, scope="user", adopt_unlabelled=True)
        is None
    )


def test_boundary_user_user_rename_target_never_mounted() -> None:
    labels = {**labels_for(ALICE), ownership.LABEL_RENAME_JOB: "job1"}
    why = ownership.volume_refusal(
        "v-alice", labels, owner=ALICE, scope="user", unfinished_jobs={"job1"}
    )
    assert why and "rename job job1" in why
    # once the job has ended the volume is simply the user's
    assert ownership.volume_refusal("v-alice", labels, owner=ALICE, scope="user") is None


def test_boundary_user_user_private_volume_as_shared_refused() -> None:
    why = ownership.volume_refusal("v", labels_for(ALICE), owner=BOB, scope="shared")
    assert why and "private volume" in why
    assert (
        ownership.volume_refusal("v", labels_for(BOB, "shared"), owner=BOB, scope="shared") is None
    )
    # admins create network shares by hand: no labels is fine for shared entries
    assert ownership.volume_refusal("v", {}, owner=BOB, scope="shared") is None


def test_boundary_user_user_shared_volume_as_private_refused() -> None:
    why = ownership.volume_refusal("v", labels_for(ALICE, "shared"), owner=BOB, scope="user")
    assert why


def test_docker_spawner_volumes_trait() -> None:
    # scope None: a volume named in DockerSpawner's own `volumes`
    assert ownership.volume_refusal("x", {}, owner=BOB, scope=None) is None
    assert ownership.volume_refusal("x", labels_for(ALICE), owner=BOB, scope=None)


def test_containers() -> None:
    mine = container_labels(ALICE.id, ALICE.name, "", ALICE.created)
    assert ownership.container_refusal("c", mine, owner=ALICE, server_name="") is None
    assert "another user" in ownership.container_refusal("c", mine, owner=BOB, server_name="")
    assert "not ''" in ownership.container_refusal(
        "c",
        container_labels(ALICE.id, ALICE.name, "gpu", ALICE.created),
        owner=ALICE,
        server_name="",
    )
    assert ownership.container_refusal("c", {}, owner=ALICE, server_name="")
    assert (
        ownership.container_refusal("c", {}, owner=ALICE, server_name="", adopt_unlabelled=True)
        is None
    )


# -- properties ---------------------------------------------------------------

# what JupyterHub and our rule accept, lower-cased as JupyterHub normalizes
names = (
    st.text(min_size=1, max_size=12)
    .map(str.lower)
    .filter(lambda n: usernames.problem(n) is None and n == n.strip() and "/" not in n)
)

_piece = st.text(alphabet="abcdefgh0123-", max_size=5)


@st.composite
def volume_sets(draw: st.DrawFn) -> dict:
    """Valid per-user volume sets whose name templates may overlap across users."""
    n = draw(st.integers(1, 3))
    entries = {}
    for i in range(n):
        head = draw(_piece)
        tail = draw(_piece)
        entries[f"k{i}"] = {"name": f"v{head}{{username}}{tail}", "mount": f"/m{i}"}
    try:
        parse_volume_set(entries)
    except VolumeSetError:
        assume(False)
    return entries


def rendered(vset: dict, name: str) -> dict[str, str]:
    ns = {"username": escape(name)}
    return {spec.key: spec.render_name(ns) for spec in parse_volume_set(vset)}


@settings(max_examples=400, deadline=None)
@given(a=names, b=names)
def test_property_accepted_names_escape_apart(a: str, b: str) -> None:
    """Printable names give distinct Docker names under the default templates."""
    assume(a != b)
    assert escape(a) != escape(b)
    assert f"jupyterhub-user-{escape(a)}" != f"jupyterhub-user-{escape(b)}"


_safe = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789", max_size=6)


@settings(max_examples=300, deadline=None)
@given(p=_safe, q=_safe, k=st.integers(1, 7), d=st.sampled_from("0123456789abcdef"))
def test_property_colliding_names_are_refused(p: str, q: str, k: int, d: str) -> None:
    """Every pair that escapes alike (a byte < 0x10 gets ONE hex digit) has a refused name."""
    a = p + chr(k) + d + q  # "\x02" + "d" escapes to "-2d"
    b = p + chr(16 * k + int(d, 16)) + q  # "-" (0x2d) escapes to "-2d" too
    assume(escape(a) == escape(b))
    assert a != b
    assert usernames.problem(a)


@settings(max_examples=300, deadline=None)
@given(vset=volume_sets(), a=names, b=names)
def test_property_no_shared_mount(vset: dict, a: str, b: str) -> None:
    """Alice spawns first; every volume name of Bob that already exists (Alice's) is refused."""
    assume(a != b)
    alice = ownership.Owner(1, a, "2026-01-01T00:00:00")
    bob = ownership.Owner(2, b, "2026-01-02T00:00:00")
    specs = {s.key: s for s in parse_volume_set(vset)}
    existing = {}  # Docker volume name -> labels, as Alice's spawn created them
    for key, vol in rendered(vset, a).items():
        existing.setdefault(
            vol,
            volume_labels(specs[key], owner_id=alice.id, owner_name=a, owner_created=alice.created),
        )
    mounted = []
    refused = False
    for _key, vol in rendered(vset, b).items():
        if vol in existing:
            why = ownership.volume_refusal(vol, existing[vol], owner=bob, scope="user")
            refused = refused or bool(why)
            if not why:
                mounted.append(vol)
        else:
            mounted.append(vol)
    assert refused or not (set(mounted) & set(existing))
