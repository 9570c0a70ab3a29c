"""`hubforge base-model`: the team's base models for transfer learning (add, list, remove)."""

from __future__ import annotations

import argparse
import sys


def cmd_base_model(args: argparse.Namespace) -> int:
    from .. import automl

    try:
        if args.bm_command == "add":
            model = automl.add_base_model(
                args.name,
                args.model,
                input_size=args.input_size,
                licence=args.licence,
                source=args.source,
                preprocessing=args.preprocessing,
                private=args.private,
            )
            seen = "only you" if model.private else "the whole team"
            print(f"Added {model.name} ({model.card['format']}); {seen} can use it")
        elif args.bm_command == "list":
            for m in automl.base_models():
                size = "x".join(map(str, m.input_size))
                private = "  private" if m.private else ""
                print(
                    f"{m.name:<24} {size:<12} {m.preprocessing:<10} {m.licence:<14} "
                    f"{m.added_by}{private}  {m.source}"
                )
        else:
            automl.remove_base_model(args.name)
            print(f"Removed {args.name}")
    except automl.BaseModelError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


def _automl_parser(sub: argparse._SubParsersAction) -> None:
    bm = sub.add_parser("base-model", help="the team's base models for transfer learning")
    bm_sub = bm.add_subparsers(dest="bm_command", required=True, metavar="ACTION")
    add = bm_sub.add_parser("add", help="copy a SavedModel folder or .keras file into the store")
    add.add_argument("name", help="its name in the store, e.g. mobilenet-v2-96")
    add.add_argument("model", help="a SavedModel folder or a .keras file")
    add.add_argument(
        "--input-size",
        type=int,
        nargs="+",
        required=True,
        help="e.g. 96 96 3 (height width channels)",
    )
    add.add_argument("--licence", required=True, help="e.g. Apache-2.0")
    add.add_argument("--source", required=True, help="where the weights came from")
    add.add_argument(
        "--preprocessing",
        default="scale_0_1",
        choices=["none", "scale_0_1", "scale_-1_1"],
        help="what the model expects of its input (default scale_0_1: pixels / 255)",
    )
    add.add_argument("--private", action="store_true", help="only you can see and use it")
    bm_sub.add_parser("list", help="the models you can use")
    remove = bm_sub.add_parser("remove", help="take a model you added out of the store")
    remove.add_argument("name")
    bm.set_defaults(func=cmd_base_model)
