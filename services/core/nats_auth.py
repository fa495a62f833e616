"""NATS users, permissions and TLS material for a Tailor deployment.

One NKey user per service, plus the provisioner (`tailor`), which alone creates streams
and consumers. `write_accounts` writes, into one folder:

- `auth.conf`: the server's `authorization { users = [...] }` block (public keys and
  permissions only: `include` it from nats-server.conf);
- `<user>.nk`: each user's seed (mode 0600), what `TAILOR_NATS_CREDS_FILE` points at.

Seeds already in the folder are kept, so re-running after a code change only rewrites
the permissions. `write_tls` makes a CA and a server certificate for the embedded stack
and tests; production brings its own certificates.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import os
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import nkeys
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from .bus_contract import PROVISIONER, Grant

AUTH_CONF = "auth.conf"


def _write_private(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    os.chmod(path, 0o600)  # also when the file existed with a wider mode


def seed_file(folder: Path, user: str) -> Path:
    return folder / f"{user}.nk"


def ensure_seed(path: Path) -> str:
    """The user's public key; its seed is created (0600) unless the file holds one."""
    if not path.exists():
        _write_private(path, nkeys.encode_seed(secrets.token_bytes(32), nkeys.PREFIX_BYTE_USER))
    return str(nkeys.from_seed(bytearray(path.read_bytes().strip())).public_key.decode())


def _user_block(public_key: str, grant: Grant | None) -> str:
    if grant is None:  # the provisioner: every subject
        return f"    {{ nkey: {json.dumps(public_key)} }}"
    permissions = {"publish": {"allow": list(grant.publish)},
                   "subscribe": {"allow": list(grant.subscribe)}}
    return f"    {{ nkey: {json.dumps(public_key)}, permissions: {json.dumps(permissions)} }}"


def write_accounts(folder: Path, grants: Sequence[Grant]) -> Path:
    """Seeds for every service and the provisioner, and the server's `auth.conf`."""
    folder.mkdir(parents=True, exist_ok=True)
    os.chmod(folder, 0o700)
    blocks = [f"    # {PROVISIONER}: creates streams and consumers; used by `tailor` only",
              _user_block(ensure_seed(seed_file(folder, PROVISIONER)), None)]
    for grant in grants:
        blocks += [f"    # {grant.service}",
                   _user_block(ensure_seed(seed_file(folder, grant.service)), grant)]
    text = ("# Written by `tailor nats accounts`: public keys and permissions, no secrets.\n"
            "authorization {\n  users = [\n" + "\n".join(blocks) + "\n  ]\n}\n")
    conf = folder / AUTH_CONF
    conf.write_text(text)
    os.chmod(conf, 0o600)  # who may do what on the bus: the operator's business only
    return conf


@dataclass(frozen=True)
class TlsMaterial:
    ca: Path
    cert: Path
    key: Path


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def write_tls(folder: Path, hosts: Sequence[str] = ("127.0.0.1", "localhost"),
              days: int = 365) -> TlsMaterial:
    """A CA (its key is not kept) and a server certificate for `hosts`, signed by it."""
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Tailor NATS CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=days))
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                       content_commitment=False, key_encipherment=False,
                                       data_encipherment=False, key_agreement=False,
                                       encipher_only=False, decipher_only=False), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0])]))
            .issuer_name(ca_name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=days))
            .add_extension(x509.SubjectAlternativeName(names), critical=False)
            # Client auth too: the nodes' routes present it to each other (`verify: true`).
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH,
                                                  ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    folder.mkdir(parents=True, exist_ok=True)
    found = TlsMaterial(folder / "ca.pem", folder / "server-cert.pem", folder / "server-key.pem")
    found.ca.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    found.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    _write_private(found.key, _key_pem(key))
    return found


def tls_block(material: TlsMaterial) -> str:
    """The server's `tls {}` block: clients must use TLS and verify against the CA."""
    return ("tls {\n"
            f"  cert_file: {json.dumps(str(material.cert))}\n"
            f"  key_file: {json.dumps(str(material.key))}\n"
            "  timeout: 2\n"
            "}\n")
