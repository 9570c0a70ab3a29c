"""`hubforge tensorboard`: open, list and stop TensorBoards on log dirs and jobs."""

from __future__ import annotations

import argparse
import sys


def cmd_tensorboard(args: argparse.Namespace) -> int:
    from .. import tensorboard

    try:
        if args.tb_command == "open":
            tb = tensorboard.open(
                args.logdir if len(args.logdir) > 1 else args.logdir[0], name=args.name
            )
            print(f"TensorBoard {tb.name}: {tb.url}")
        elif args.tb_command == "list":
            for tb in tensorboard.list_instances():
                print(f"{tb.name:<24} {tb.url}  {', '.join(tb.logdirs.values())}")
        elif args.all:
            for tb in tensorboard.list_instances():
                tb.stop()
                print(f"Stopped {tb.name}")
        elif args.name:
            tensorboard.stop(args.name)
            print(f"Stopped {args.name}")
        else:
            print("error: give a NAME or --all", file=sys.stderr)
            return 2
    except tensorboard.TensorBoardError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


def _tensorboard_parser(sub: argparse._SubParsersAction) -> None:
    tb = sub.add_parser("tensorboard", help="TensorBoard on log dirs and jobs")
    tb_sub = tb.add_subparsers(dest="tb_command", required=True, metavar="ACTION")
    open_ = tb_sub.add_parser("open", help="start (or reuse) a TensorBoard, print its URL")
    open_.add_argument("logdir", nargs="+", help="log dir(s) or job id(s); several compare")
    open_.add_argument("--name", help="instance name (default: from the log dirs)")
    tb_sub.add_parser("list", help="running TensorBoards")
    stop = tb_sub.add_parser("stop", help="stop a TensorBoard")
    stop.add_argument("name", nargs="?", help="instance name (see `list`)")
    stop.add_argument("--all", action="store_true", help="stop every instance")
    tb.set_defaults(func=cmd_tensorboard)
