"""``python -m hubforge.runas ACCOUNT -- COMMAND...``: run COMMAND as the system account
ACCOUNT (no supplementary groups), in place of this process (same pid). Root starts the
workbench's shared components this way (the hub's proxy) so that none of them keeps root."""

from __future__ import annotations

import os
import pwd
import sys


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) < 3 or args[1] != "--":
        print("usage: python -m hubforge.runas ACCOUNT -- COMMAND...", file=sys.stderr)
        return 2
    try:
        account = pwd.getpwnam(args[0])
    except KeyError:
        print(f"hubforge.runas: no account {args[0]!r}", file=sys.stderr)
        return 2
    if account.pw_uid == 0:
        print("hubforge.runas: refusing to run as root", file=sys.stderr)
        return 2
    os.setgroups([])
    os.setgid(account.pw_gid)
    os.setuid(account.pw_uid)
    os.environ["HOME"] = account.pw_dir
    os.environ["USER"] = os.environ["LOGNAME"] = account.pw_name
    os.execvp(args[2], args[2:])
    return 127  # not reached


if __name__ == "__main__":
    sys.exit(main())
