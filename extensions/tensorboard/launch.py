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
import zipfile
from collections.abc import Callable
from typing import BinaryIO

PREFIX_ENV = "HUBFORGE_TENSORBOARD_PREFIX"
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


def main() -> None:
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
