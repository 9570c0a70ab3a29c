"""hubforge.serving loads its public names on first use: the `hubforge` command (which builds
every parser at each run) starts without NumPy, and the names still work as before."""

from __future__ import annotations

import json
import subprocess
import sys


def run(code: str) -> dict:
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.splitlines()[-1])  # (after what --help printed)


def test_the_cli_builds_its_parsers_without_numpy():
    seen = run(
        "import json, sys\n"
        "from hubforge import cli\n"
        "try:\n"
        "    cli.main(['serve', 'optimize', '--help'])\n"
        "except SystemExit:\n"
        "    pass\n"
        "print(json.dumps({'numpy': 'numpy' in sys.modules}))\n"
    )
    assert seen == {"numpy": False}


def test_public_names_submodules_and_completion_work_as_before():
    seen = run(
        "import json\n"
        "import hubforge.serving as serving\n"
        "names = dir(serving)\n"
        "from hubforge.serving import BadRequest, export_tflite, optimize\n"
        "try:\n"
        "    serving.not_a_name\n"
        "    missing = None\n"
        "except AttributeError as e:\n"
        "    missing = str(e)\n"
        "print(json.dumps({\n"
        "    'listed': all(n in names for n in serving.__all__),\n"
        "    'list': serving.list is serving.list_endpoints,\n"
        "    'deploy': serving.deploy.__module__,\n"
        "    'optimize': optimize.__module__,\n"
        "    'export': export_tflite.__module__,\n"
        "    'error': issubclass(BadRequest, serving.ServingError),\n"
        "    'submodule': serving.tflite.__name__,\n"
        "    'missing': missing,\n"
        "}))\n"
    )
    assert seen == {
        "listed": True,
        "list": True,
        "deploy": "hubforge.serving.api",
        "optimize": "hubforge.serving.mobile",
        "export": "hubforge.serving.tflite",
        "error": True,
        "submodule": "hubforge.serving.tflite",
        "missing": "module 'hubforge.serving' has no attribute 'not_a_name'",
    }
