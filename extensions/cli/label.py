"""`hubforge label`: labeling projects in Label Studio, and sharing them."""

from __future__ import annotations

import argparse
import sys


def cmd_label(args: argparse.Namespace) -> int:
    from .. import labeling

    try:
        if args.label_command == "list":
            for project in labeling.list_projects(args.owner):
                p = project.progress
                print(f"{project.name:<30} {project.task:<22} {p['labeled']}/{p['total']} labeled")
        elif args.label_command == "create":
            project = labeling.create_project(
                args.name, args.source, args.labels.split(","), task=args.task
            )
            print(f"{project.name}: {project.last_import}")
        elif args.label_command == "progress":
            p = labeling.open_project(args.name, args.owner).progress
            counts = ", ".join(f"{k} {v}" for k, v in p["per_label"].items())
            print(f"{p['labeled']}/{p['total']} labeled ({counts})")
        elif args.label_command == "export":
            path = labeling.open_project(args.name, args.owner).export(args.format, args.output)
            print(path)
        elif args.label_command in ("share", "unshare"):
            members = getattr(labeling, args.label_command)(args.member)
            print("Shared with: " + (", ".join(members) or "nobody"))
        elif args.label_command == "shares":
            shares = labeling.shares()
            print("Shared with: " + (", ".join(shares["shared_with"]) or "nobody"))
            print("Shared with you by: " + (", ".join(shares["shared_with_me"]) or "nobody"))
    except labeling.LabelingError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


def _label_parser(sub: argparse._SubParsersAction) -> None:
    label = sub.add_parser("label", help="labeling projects in Label Studio")
    label_sub = label.add_subparsers(dest="label_command", required=True, metavar="ACTION")
    owner = argparse.ArgumentParser(add_help=False)
    owner.add_argument("--owner", help="a teammate who shared their projects with you")
    label_sub.add_parser("list", parents=[owner], help="your projects and their progress")
    create = label_sub.add_parser("create", help="create a project (or add new items)")
    create.add_argument("name")
    create.add_argument("source", help="a folder of the data area, e.g. datasets/pets")
    create.add_argument("--labels", required=True, help="comma-separated, e.g. cat,dog")
    create.add_argument(
        "--task",
        default="image-classification",
        choices=["image-classification", "text-classification", "object-detection"],
    )
    progress = label_sub.add_parser("progress", parents=[owner], help="labeled / total, per label")
    progress.add_argument("name")
    export = label_sub.add_parser("export", parents=[owner], help="write the annotations to a file")
    export.add_argument("name")
    export.add_argument("--format", default="JSON", choices=["JSON", "JSON_MIN", "CSV", "COCO"])
    export.add_argument("--output", help="file (default: your data area's labeling/)")
    share = label_sub.add_parser("share", help="let a teammate label your projects")
    share.add_argument("member", help="their hub user name")
    unshare = label_sub.add_parser("unshare", help="stop sharing your projects with a teammate")
    unshare.add_argument("member", help="their hub user name")
    label_sub.add_parser("shares", help="who you share with, and who shares with you")
    label.set_defaults(func=cmd_label)
