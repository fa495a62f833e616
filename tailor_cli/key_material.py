"""Key material a deployment creates once and stores in its secret manager:
`tailor keys internal-token --out DIR` and `tailor keys contact-key` (the randomization
list key is `tailor randomization new-key`). Mounted into `tailor keys` by the CLI."""

from __future__ import annotations

import base64
import os
from pathlib import Path
from typing import Annotated

import typer


def internal_token(
    out: Annotated[Path, typer.Option(help="folder for private.pem and public.pem (created 0700)")],
) -> None:
    """A new Ed25519 key pair for internal tokens: private.pem for the gateway only,
    public.pem for the four services. Refuses to overwrite an existing pair."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    out.mkdir(parents=True, exist_ok=True, mode=0o700)
    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    public = key.public_key().public_bytes(serialization.Encoding.PEM,
                                           serialization.PublicFormat.SubjectPublicKeyInfo)
    for name, data in (("private.pem", private), ("public.pem", public)):
        try:
            fd = os.open(out / name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            typer.echo(f"{out / name} exists: not overwritten", err=True)
            raise typer.Exit(1) from None
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
    typer.echo(f"wrote {out / 'private.pem'} (gateway only) and {out / 'public.pem'}")


def contact_key() -> None:
    """A new contact key (base64 of 32 random bytes, AES-256-GCM) for
    TAILOR_NOTIFICATIONS_CONTACT_KEY. Printed once: store it, never lose it (the contact
    details encrypted with it cannot be read without it)."""
    typer.echo(base64.b64encode(os.urandom(32)).decode())


def mount(keys: typer.Typer) -> None:
    keys.command("internal-token")(internal_token)
    keys.command("contact-key")(contact_key)
