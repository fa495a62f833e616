"""Build the production image without a Docker engine and check it: its size, and that its
HEALTHCHECK command passes against a service started from the image.

    python scripts/check_image.py [--debian-base] [--skip-build]

Uses buildah (Debian package `buildah`) with vfs storage and chroot isolation, so it runs
as root in a container without a daemon. `--debian-base`: where no container registry can
be reached, the base image `python:3.11-slim-bookworm` is replaced by a Debian bookworm
root made with debootstrap (Debian's python3.11 instead of python.org's; larger). The
machine's CA bundle and pip.conf are mounted into the build's RUN steps only (`-v`), for
networks that inspect TLS; the image does not keep them.

The health check: a nats-server on this machine (the `local` extra's binary) with the
users of `tailor nats accounts` and provisioned streams; inside the image, as its user,
`tailor serve randomization` on SQLite with its seed mounted, then the image's own
HEALTHCHECK command (read from the built image's config). Slow (minutes): not in
`make test`.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

BASE = "docker.io/library/python:3.11-slim-bookworm"
TAG = "localhost/tailor:check"
STORAGE = ["--storage-driver", "vfs"]


def buildah(*args: str, check: bool = True, capture: bool = True) -> str:
    done = subprocess.run(["buildah", *STORAGE, *args], text=True, check=False,
                          capture_output=capture)
    if check and done.returncode != 0:
        raise SystemExit(f"buildah {' '.join(args[:2])} failed:\n{done.stderr}")
    return done.stdout if capture else ""


def debian_base(work: Path) -> None:
    """A stand-in for the python base image from Debian packages (debootstrap)."""
    if buildah("images", "--quiet", BASE, check=False).strip():
        return
    rootfs = work / "rootfs"
    subprocess.run(["debootstrap", "--variant=minbase", "--include=python3.11,python3.11-venv,"
                    "python3-venv,python-is-python3,ca-certificates", "bookworm", str(rootfs),
                    "http://deb.debian.org/debian"], check=True)
    ctr = buildah("from", "scratch").strip()
    mount = buildah("mount", ctr).strip()
    subprocess.run(["cp", "-a", f"{rootfs}/.", mount], check=True)
    buildah("umount", ctr)
    buildah("config", "--env", "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            ctr)
    buildah("commit", ctr, BASE)
    buildah("rm", ctr)


def build() -> None:
    mounts = []
    for host in ("/etc/ssl/certs/ca-certificates.crt", "/etc/pip.conf"):
        if Path(host).exists():
            mounts += ["-v", f"{host}:{host}:ro"]
    buildah("bud", "--isolation", "chroot", "--pull-never", "--layers=false", "--format",
            "docker", *mounts, "-t", TAG, "-f", "Dockerfile", str(ROOT), capture=False)


def healthcheck(work: Path) -> int:
    """Start randomization from the image and run the image's HEALTHCHECK; its exit code."""
    from tailor_cli.natsd import NatsServer, free_port

    config = json.loads(buildah("inspect", "--type", "image", TAG))
    test = config["Docker"]["config"]["Healthcheck"]["Test"]
    assert test[0] == "CMD", test
    # `buildah run --isolation chroot` shares this machine's network, where 8000 may be
    # another process's: the service and the command use a free port instead.
    port = free_port()
    command = [c.replace(":8000/", f":{port}/") for c in test[1:]]
    nats = NatsServer(work / "nats").start()  # users, seeds and provisioned streams
    mounted = work / "mounted"
    shutil.copytree(nats.auth_dir, mounted)
    for path in [mounted, *mounted.rglob("*")]:  # the image's user owns its secrets (0600)
        os.chown(path, 10001, 10001)
    home = work / "home"
    home.mkdir()
    home.chmod(0o777)  # the image's user writes its SQLite database and log there
    ctr = buildah("from", "--pull-never", TAG).strip()
    try:
        health = " ".join(_quote(c) for c in command)
        script = (
            f"{health} 2>/dev/null && {{ echo 'healthy before the service started'; exit 9; }}\n"
            f"tailor serve randomization --host 127.0.0.1 --port {port} "
            ">/tmp/home/serve.log 2>&1 &\npid=$!\n"
            f"for i in $(seq 1 300); do {health} 2>/dev/null && break; "
            "kill -0 $pid 2>/dev/null || break; sleep 1; done\n"
            f"{health}\n"
            "rc=$?; echo healthcheck-exit=$rc; kill $pid; exit $rc\n")
        done = subprocess.run(
            ["buildah", *STORAGE, "run", "--isolation", "chroot",
             "-v", f"{work / 'mounted'}:/check:ro", "-v", f"{home}:/tmp/home",
             "--env", f"TAILOR_NATS_URL={nats.url}", "--env", "TAILOR_HOME=/tmp/home",
             "--env", "TAILOR_MIGRATE_ON_START=true",
             "--env", "TAILOR_NATS_CREDS_FILE=/check/randomization.nk",
             ctr, "--", "sh", "-c", script], text=True, capture_output=True, check=False)
        print(done.stdout[-2000:], done.stderr[-1000:], sep="\n")
        log = home / "serve.log"
        if done.returncode != 0 and log.exists():
            print("tailor serve:", log.read_text()[-3000:])
        return done.returncode
    finally:
        buildah("rm", ctr, check=False)
        nats.stop()


def _quote(word: str) -> str:
    return "'" + word.replace("'", "'\"'\"'") + "'"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--debian-base", action="store_true")
    parser.add_argument("--skip-build", action="store_true")
    args = parser.parse_args()
    if shutil.which("buildah") is None:
        print("buildah is missing: apt-get install buildah")
        return 2
    with tempfile.TemporaryDirectory(prefix="tailor-image-") as folder:
        work = Path(folder)
        if not args.skip_build:
            if args.debian_base:
                debian_base(work)
            build()
        size = buildah("images", "--format", "{{.Size}}", TAG).strip()
        print(f"image {TAG}: {size}")
        code = healthcheck(work)
        print(f"HEALTHCHECK command: {'passes' if code == 0 else f'fails (exit {code})'}")
        return code


if __name__ == "__main__":
    raise SystemExit(main())
