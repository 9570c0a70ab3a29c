"""Run TensorBoard with a path prefix taken from the environment.

``python -m hubforge.tensorboard.launch --logdir ... --port N`` is TensorBoard's own command
line plus ``--path_prefix $HUBFORGE_TENSORBOARD_PREFIX``. The prefix ends in a per-instance
key: a process's command line is readable by every account on the machine
(/proc/<pid>/cmdline), its environment only by its own account, so another user who finds
the port still cannot guess a path TensorBoard answers.

TensorBoard's page asks for its Roboto fonts at the site's root (``url(/font-roboto/…)``
in index.html), outside any prefix: behind the hub those requests fail. The assets served
here are TensorBoard's own with that one URL made relative to the page, which TensorBoard
serves under its prefix.
"""

from __future__ import annotations

import io
import os
import sys
import types
import zipfile
from collections.abc import Callable
from typing import BinaryIO

PREFIX_ENV = "HUBFORGE_TENSORBOARD_PREFIX"
WITH_TF_ENV = "HUBFORGE_TENSORBOARD_TENSORFLOW"
ROOT_FONTS, PAGE_FONTS = b"url(/font-roboto/", b"url(font-roboto/"


def fonts_beside_the_page(provider: Callable[[], BinaryIO]) -> Callable[[], BinaryIO]:
    """An assets provider: ``provider``'s zip with index.html's font URLs made relative."""

    def assets() -> BinaryIO:
        out = io.BytesIO()
        with provider() as fp, zipfile.ZipFile(fp) as source, zipfile.ZipFile(out, "w") as zip_:
            for name in source.namelist():
                data = source.read(name)
                if name == "index.html":
                    data = data.replace(ROOT_FONTS, PAGE_FONTS)
                zip_.writestr(name, data)  # stored: TensorBoard reads it once, then gzips
        out.seek(0)
        return out

    return assets


def without_tensorflow() -> None:
    """TensorBoard imports TensorFlow when it is installed, only to read files and a few
    protos it also ships itself: 5 s and 700 MB per instance on a small machine, against
    0.6 s and 80 MB with TensorBoard's own stand-in, which it uses when the module
    ``tensorboard.compat.notf`` exists. Lost: TensorFlow's remote filesystems (the data is a
    local mount here) and the projector's checkpoint reading; ``HUBFORGE_TENSORBOARD_TENSORFLOW=1``
    in the server's environment brings TensorFlow back."""
    if os.environ.get(WITH_TF_ENV) != "1":
        sys.modules["tensorboard.compat.notf"] = types.ModuleType("tensorboard.compat.notf")


def main() -> None:
    without_tensorflow()
    prefix = os.environ.pop(PREFIX_ENV, "")
    if prefix:
        sys.argv += ["--path_prefix", prefix]
    from absl import app
    from tensorboard import assets, default, main_lib, program
    from tensorboard.plugins import base_plugin

    main_lib.global_init()
    provider = assets.get_default_assets_zip_provider()
    tensorboard = program.TensorBoard(
        plugins=default.get_plugins(),
        assets_zip_provider=fonts_beside_the_page(provider) if provider else None,
    )
    try:
        app.run(tensorboard.main, flags_parser=tensorboard.configure)
    except base_plugin.FlagsError as e:
        print(f"Error: {e}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
