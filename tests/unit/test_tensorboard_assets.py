"""TensorBoard's own assets, with only index.html's font URLs made relative to the page."""

from __future__ import annotations

import zipfile

from tensorboard import assets

from hubforge.tensorboard.launch import PAGE_FONTS, ROOT_FONTS, fonts_beside_the_page


def test_only_the_font_urls_of_the_page_change():
    original = assets.get_default_assets_zip_provider()
    assert original is not None, "tensorboard ships webfiles.zip"
    with (
        original() as a,
        fonts_beside_the_page(original)() as b,
        zipfile.ZipFile(a) as theirs,
        zipfile.ZipFile(b) as ours,
    ):
        assert ours.namelist() == theirs.namelist()
        index = theirs.read("index.html")
        assert index.count(ROOT_FONTS) > 10  # TensorBoard's page asks at the site root
        assert ours.read("index.html") == index.replace(ROOT_FONTS, PAGE_FONTS)
        assert ROOT_FONTS not in ours.read("index.html")
        for name in theirs.namelist():
            if name != "index.html":
                assert ours.read(name) == theirs.read(name), name
