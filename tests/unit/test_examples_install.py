"""The example notebooks are copied into a home once, never over a user's files or links."""

from __future__ import annotations

from hubforge import examples


def test_examples_are_copied_once_and_never_over_a_users_files(tmp_path):
    home, marker = tmp_path / "home", tmp_path / "state" / "copied-ada"
    home.mkdir()
    marker.parent.mkdir()
    (home / "examples").mkdir()
    (home / "examples" / "02-train.ipynb").write_text("my edits")
    copied = examples.install(home, marker)
    assert [p.name for p in copied] == [
        p.name for p in examples.notebooks() if p.name != "02-train.ipynb"
    ]
    assert (home / "examples" / "02-train.ipynb").read_text() == "my edits"
    first = examples.notebooks()[0]
    assert (home / "examples" / first.name).read_bytes() == first.read_bytes()
    # deleted by the user: not back on the next spawn
    (home / "examples" / first.name).unlink()
    assert examples.install(home, marker) == []
    assert not (home / "examples" / first.name).exists()


def test_examples_are_never_written_through_a_link(tmp_path):
    home, elsewhere = tmp_path / "home", tmp_path / "elsewhere"
    home.mkdir()
    elsewhere.mkdir()
    (home / "examples").symlink_to(elsewhere, target_is_directory=True)
    assert examples.install(home, tmp_path / "m1") == []
    assert list(elsewhere.iterdir()) == []
    (home / "examples").unlink()
    (home / "examples").mkdir()
    first = examples.notebooks()[0].name
    (home / "examples" / first).symlink_to(elsewhere / "planted")
    copied = examples.install(home, tmp_path / "m2")
    assert first not in [p.name for p in copied] and len(copied) == 4
    assert not (elsewhere / "planted").exists()


def test_a_pod_copies_them_into_its_home_once(tmp_path, capsys):
    assert examples.main([str(tmp_path)]) == 0
    assert "5 example notebook(s) copied" in capsys.readouterr().out
    assert sorted(p.name for p in (tmp_path / "examples").iterdir()) == [
        p.name for p in examples.notebooks()
    ]
    assert (tmp_path / ".local/share/hubforge/examples-copied").is_file()
    assert examples.main([str(tmp_path)]) == 0
    assert "0 example notebook(s) copied" in capsys.readouterr().out
