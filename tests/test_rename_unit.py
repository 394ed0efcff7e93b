"""Pure parts of the rename: tree manifests and their comparison, move planning, naming."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from jupyterhub_ext.rename import treeverify
from jupyterhub_ext.rename.runner import namespace, plan_moves_pure
from jupyterhub_ext.rename.volcopy import parse_du


def make_tree(root: Path) -> None:
    (root / "d").mkdir(parents=True)
    (root / "d" / "f.txt").write_text("hello")
    os.link(root / "d" / "f.txt", root / "hard")
    os.symlink("d/f.txt", root / "link")
    (root / "secret").write_text("s")
    os.chmod(root / "secret", 0o600)
    os.utime(root / "d" / "f.txt", ns=(1_600_000_000_000_000_000, 1_600_000_000_123_456_789))


def copy_tree(src: Path, dst: Path) -> None:
    dst.mkdir()
    subprocess.run(["cp", "-a", f"{src}/.", f"{dst}/"], check=True)


def test_manifest_records_links_modes_and_checksums(tmp_path):
    make_tree(tmp_path / "a")
    m = treeverify.manifest(str(tmp_path / "a"))
    assert m["link"]["type"] == "symlink" and m["link"]["target"] == "d/f.txt"
    assert m["secret"]["mode"] == 0o600
    assert m["d/f.txt"]["sha256"] == (
        "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
    )
    # both names of the hard-linked file point at the first one walked
    assert m["d/f.txt"]["link_group"] == m["hard"]["link_group"] == "hard"
    assert m["d/f.txt"]["mtime_ns"] == 1_600_000_000_123_456_789
    assert "." in m


def test_cp_a_copy_is_identical(tmp_path):
    make_tree(tmp_path / "a")
    copy_tree(tmp_path / "a", tmp_path / "b")
    result = treeverify.compare(
        treeverify.manifest(str(tmp_path / "a")), treeverify.manifest(str(tmp_path / "b"))
    )
    assert result["identical"], result
    assert result["files"] == 3 and result["bytes"] == len("hello") * 2 + 1


@pytest.mark.parametrize(
    "damage, expect",
    [
        (lambda b: (b / "d" / "f.txt").write_text("HELLO"), "d/f.txt: mtime_ns"),
        (lambda b: os.chmod(b / "secret", 0o644), "secret: mode 384 != 420"),
        (lambda b: (b / "link").unlink(), "link: missing from the copy"),
        (lambda b: (b / "extra").write_text("x"), "extra: only in the copy"),
    ],
)
def test_compare_reports_each_kind_of_difference(tmp_path, damage, expect):
    make_tree(tmp_path / "a")
    copy_tree(tmp_path / "a", tmp_path / "b")
    damage(tmp_path / "b")
    result = treeverify.compare(
        treeverify.manifest(str(tmp_path / "a")), treeverify.manifest(str(tmp_path / "b"))
    )
    assert not result["identical"]
    assert any(d.startswith(expect) for d in result["differences"]), result["differences"]


def test_broken_hard_link_is_a_difference(tmp_path):
    make_tree(tmp_path / "a")
    copy_tree(tmp_path / "a", tmp_path / "b")
    # same content, same times, but no longer one file: a plain cp would do this
    hard = tmp_path / "b" / "hard"
    st = hard.stat()
    hard.unlink()
    hard.write_text("hello")
    os.utime(hard, ns=(st.st_atime_ns, st.st_mtime_ns))
    result = treeverify.compare(
        treeverify.manifest(str(tmp_path / "a")), treeverify.manifest(str(tmp_path / "b"))
    )
    assert not result["identical"]
    assert any("link_group" in d for d in result["differences"])


def test_runs_as_python_c_like_in_the_helper(tmp_path):
    make_tree(tmp_path / "a")
    copy_tree(tmp_path / "a", tmp_path / "b")
    src = Path(treeverify.__file__).read_text()
    ok = subprocess.run(
        [sys.executable, "-c", src, "compare", str(tmp_path / "a"), str(tmp_path / "b")],
        capture_output=True,
        text=True,
    )
    assert ok.returncode == 0, ok.stderr
    (tmp_path / "b" / "extra").write_text("x")
    bad = subprocess.run(
        [sys.executable, "-c", src, "compare", str(tmp_path / "a"), str(tmp_path / "b")],
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 1 and '"identical": false' in bad.stdout


def test_manifests_made_at_once_equal_those_made_one_after_the_other(tmp_path):
    make_tree(tmp_path / "a")
    for i in range(50):
        (tmp_path / "a" / "d" / f"n{i}").write_bytes(os.urandom(3000 * i))
    copy_tree(tmp_path / "a", tmp_path / "b")
    (tmp_path / "b" / "d" / "n7").write_bytes(b"changed")
    a, b = str(tmp_path / "a"), str(tmp_path / "b")
    both = treeverify.manifests(a, b)
    assert both == [treeverify.manifest(a), treeverify.manifest(b)]
    assert both[0]["d/n7"]["sha256"] != both[1]["d/n7"]["sha256"]


def test_plan_combines_templates_and_labels():
    template = [
        {"key": "home", "server": "", "old": "p-alice-home", "new": "p-bob-home"},
        {"key": "work", "server": "", "old": "p-alice-work", "new": "p-bob-work"},
        # a second server sharing the per-user volume: planned once
        {"key": "home", "server": "", "old": "p-alice-home", "new": "p-bob-home"},
    ]
    labelled = [
        {"Name": "p-alice-home", "Labels": {"jupyterhub-ext.volume-key": "home"}},
        # made under an older name template: found by its owner labels
        {"Name": "legacy-alice-cache", "Labels": {"jupyterhub-ext.volume-key": "cache"}},
        {"Name": "p-alice-gone", "Labels": {"jupyterhub-ext.volume-key": "gone"}},
    ]

    def resolve(labels):
        key = labels["jupyterhub-ext.volume-key"]
        return None if key == "gone" else (key, "", f"p-bob-{key}")

    moves, left = plan_moves_pure(template, labelled, resolve)
    assert [(m["old"], m["new"]) for m in moves] == [
        ("legacy-alice-cache", "p-bob-cache"),
        ("p-alice-home", "p-bob-home"),
        ("p-alice-work", "p-bob-work"),
    ]
    assert left == [{"name": "p-alice-gone", "reason": "key 'gone' is not in the volume set"}]


def test_namespace_escapes_like_dockerspawner():
    from jupyterhub_ext.spawner import ExtDockerSpawner

    sp = ExtDockerSpawner(user=type("U", (), {"name": "x", "id": 1})(), _deprecated_db_session=None)
    ns = namespace(sp, "John.Doe", "lab")
    assert ns["username"] == sp.escape("John.Doe") == "-4aohn-2e-44oe"
    assert ns["raw_username"] == "John.Doe"
    assert ns["servername"] == "lab"


def test_parse_du():
    assert parse_du("2048\t/jhext-rename/src\n") == 2048
    assert parse_du("") is None and parse_du(None) is None and parse_du("du: x") is None


def test_static_head_scopes_label_lookups_to_this_hub():
    from jupyterhub_ext.rename.runner import static_head

    ns = {"prefix": "jupyter", "servername": "", "imagename": "img"}
    assert static_head("{prefix}-{username}", ns) == "jupyter-"
    assert static_head("jupyterhub-user-{username}-cache", ns) == "jupyterhub-user-"
    assert static_head("{username}-home", ns) == ""


def test_db_listeners_follow_native_row_guard_null_and_journal(tmp_path):
    """The name listeners on a real JupyterHub database (no hub process)."""
    import nativeauthenticator.orm as native
    from jupyterhub import orm

    from jupyterhub_ext.rename import journal as rename_db

    rename_db.install()
    db = orm.new_session_factory(f"sqlite:///{tmp_path}/jupyterhub.sqlite")()
    user = orm.User(name="alice")
    db.add(user)
    db.add(native.UserInfo(username="alice", password=b"hash", is_authorized=True))
    db.commit()

    # a rename from anywhere: the login row follows, a core job is journalled
    user.name = "alicia"
    db.commit()
    assert native.UserInfo.find(db, "alicia").is_authorized
    assert native.UserInfo.find(db, "alice") is None
    job = db.query(rename_db.RenameJob).one()
    assert (job.old_name, job.new_name, job.source, job.state) == (
        "alice",
        "alicia",
        "core",
        "committed",
    )

    # JupyterHub 6.1.1's same-name PATCH assigns None: the name is kept
    user.name = None
    db.commit()
    db.expire_all()
    assert db.query(orm.User).one().name == "alicia"

    # a sign-up already under the new name: the whole transaction is refused
    db.add(native.UserInfo(username="bob", password=b"other"))
    db.commit()
    user.name = "bob"
    with pytest.raises(rename_db.RenameConflict) as err:
        db.commit()
    assert err.value.status_code == 409
    db.rollback()
    assert user.name == "alicia" and native.UserInfo.find(db, "alicia") is not None

    # our own engine's rename: the row follows, no second journal row
    db.info[rename_db.OWN_RENAME] = {user.id: "job-key"}
    user.name = "ally"
    db.commit()
    db.info.pop(rename_db.OWN_RENAME)
    assert native.UserInfo.find(db, "ally") is not None
    assert db.query(rename_db.RenameJob).count() == 1


def _db(tmp_path):
    from jupyterhub import orm

    from jupyterhub_ext.rename import journal as rename_db

    rename_db.install()
    return orm.new_session_factory(f"sqlite:///{tmp_path}/jupyterhub.sqlite")()


def test_boundary_reused_user_id_does_not_inherit_rename_job(tmp_path):
    """A stranger who gets a deleted user's id (SQLite reuses the last id) gets none of her jobs."""
    from jupyterhub import orm

    from jupyterhub_ext.rename import journal as rename_db
    from jupyterhub_ext.rename import runner as rename

    db = _db(tmp_path)
    db.add(orm.User(name="first"))
    victim = orm.User(name="alice")
    db.add(victim)
    db.commit()
    victim_id = victim.id
    # renamed by JupyterHub while her server ran: the data moves later
    victim.name = "alicia"
    db.commit()
    job = db.query(rename_db.RenameJob).one()
    assert job.state == rename_db.COMMITTED and job.user_created
    assert rename.jobs_of(db, victim) == [job]
    db.delete(victim)
    db.commit()

    stranger = orm.User(name="mallory")
    db.add(stranger)
    db.commit()
    assert stranger.id == victim_id  # the id really is reused
    assert rename.jobs_of(db, stranger) == []
    assert rename.api_job_running(db, stranger.id, rename_db.user_stamp(stranger)) is None
    db.refresh(job)
    assert job.state == rename_db.ABANDONED
    # and the names it held are free again
    assert rename.reserved(db, "alicia") is None and rename.reserved(db, "alice") is None


def test_boundary_new_rows_refused_under_reserved_name(tmp_path):
    """Sign-up rows, hub users and JupyterHub's own rename cannot take a name a rename holds."""
    import nativeauthenticator.orm as native
    from jupyterhub import orm

    from jupyterhub_ext.rename import journal as rename_db
    from jupyterhub_ext.rename import runner as rename

    db = _db(tmp_path)
    native.Base.metadata.create_all(db.get_bind())
    ann = orm.User(name="ann")
    other = orm.User(name="bea")
    db.add_all([ann, other])
    db.commit()
    job = rename.reserve(db, ann, "zoe", "admin")
    try:
        assert rename.reserved(db, "zoe") is job and rename.reserved(db, "ann") is job
        assert job.key in rename.unfinished_job_keys(db)
        for row in (orm.User(name="zoe"), native.UserInfo(username="zoe", password=b"x")):
            db.add(row)
            with pytest.raises(rename_db.RenameConflict, match="reserved by the rename of ann"):
                db.commit()
            db.rollback()
        other.name = "zoe"
        with pytest.raises(rename_db.RenameConflict, match="reserved"):
            db.commit()
        db.rollback()
        assert db.query(orm.User).filter_by(name="zoe").first() is None
    finally:
        rename.release(db, job)
    assert rename.reserved(db, "zoe") is None
    db.add(orm.User(name="zoe"))
    db.commit()


def test_rename_api_never_shows_driver_options():
    """Docker reports driver options resolved (secrets included); older journal rows held them."""
    from datetime import datetime

    from jupyterhub_ext.rename.journal import RenameJob

    job = RenameJob(
        key="k",
        user_id=1,
        old_name="a",
        new_name="b",
        source="api",
        actor="x",
        state="done",
        plan={"moves": [{"old": "v-a", "new": "v-b", "options": {"o": "password=hunter2"}}]},
        created=datetime(2026, 1, 1),
        updated=datetime(2026, 1, 1),
    )
    model = job.model()
    assert "hunter2" not in repr(model)
    assert model["plan"]["moves"] == [{"old": "v-a", "new": "v-b"}]


def test_privileged_settings_name_what_grants_to_the_name(tmp_path):
    from types import SimpleNamespace

    from jupyterhub import orm

    from jupyterhub_ext.rename import runner as rename

    db = _db(tmp_path)
    db.add(orm.Role(name="peek", scopes=["read:users!user=dora", "servers!server=ed/lab"]))
    db.add(orm.Role(name="near-miss", scopes=["read:users!user=dorathy", "servers"]))
    db.commit()
    auth = SimpleNamespace(admin_users={"boss"}, allowed_users={"carl"})
    app = SimpleNamespace(
        authenticator=auth,
        load_roles=[{"name": "ops", "users": ["olga"]}],
        load_groups={"lab": {"users": ["gus"]}, "old": ["hal"]},
    )

    def found(name):
        return rename.privileged_settings(db, name, auth, app)

    assert found("boss") == ["c.Authenticator.admin_users lists boss"]
    assert found("carl") == ["c.Authenticator.allowed_users lists carl"]
    assert found("olga") == ["the role 'ops' in c.JupyterHub.load_roles lists olga"]
    assert found("gus") == ["the group 'lab' in c.JupyterHub.load_groups lists gus"]
    assert found("hal") == ["the group 'old' in c.JupyterHub.load_groups lists hal"]
    assert found("dora") == ["the role 'peek' has scope(s) read:users!user=dora"]
    assert found("ed") == ["the role 'peek' has scope(s) servers!server=ed/lab"]
    assert found("dor") == [] and found("nobody") == []
