"""CURVE key pairs on disk: ``NAME.key`` (public) and ``NAME.key_secret`` (secret, mode 0600).

The files use ZeroMQ's certificate format (the one ``zmq.auth.create_certificates``
writes and ``zmq.auth.load_certificate`` reads), so other ZeroMQ tools can use
them. Differences from pyzmq's writer: the secret file is created owner-only
and with ``O_EXCL`` (never over an existing file unless ``overwrite``), before
the secret is written into it, and loading a secret file that anyone else can
read is refused, as ssh does. Owner-only means mode 0600 on Linux and macOS,
and on Windows an access list naming only the user, SYSTEM and the
Administrators (:mod:`mimir.net.winacl`; Windows has no mode bits).

Keys are Z85 text, 40 characters (32 bytes).
"""

from __future__ import annotations

import datetime
import os
import re
import stat
import sys
from pathlib import Path

import zmq

__all__ = [
    "PUBLIC_SUFFIX",
    "SECRET_SUFFIX",
    "KeyFileError",
    "KeyPair",
    "generate_keypair",
    "is_z85_key",
    "load_public_key",
    "load_secret_key",
    "write_keypair",
]

PUBLIC_SUFFIX = ".key"
SECRET_SUFFIX = ".key_secret"
WINDOWS = sys.platform == "win32"  # owner-only by access list instead of mode bits
_Z85_KEY = re.compile(r"^[0-9a-zA-Z.\-:+=^!/*?&<>()\[\]{}@%$#]{40}$")


class KeyFileError(ValueError):
    """A key file is missing, malformed, or unsafe. The message says which file and what to do."""


class KeyPair:
    """A CURVE key pair as Z85 text."""

    def __init__(self, public: str, secret: str | None) -> None:
        self.public = public
        self.secret = secret

    @property
    def public_bytes(self) -> bytes:
        return self.public.encode("ascii")

    @property
    def secret_bytes(self) -> bytes:
        if self.secret is None:
            raise KeyFileError("this key pair has no secret key")
        return self.secret.encode("ascii")


def is_z85_key(text: str) -> bool:
    return bool(_Z85_KEY.match(text))


def generate_keypair() -> KeyPair:
    public, secret = zmq.curve_keypair()
    return KeyPair(public.decode("ascii"), secret.decode("ascii"))


def _body(public: str, secret: str | None, banner: str) -> str:
    lines = [f"#   ****  Generated on {datetime.datetime.now().isoformat(timespec='seconds')} by mimir keys  ****",
             banner, "", "metadata", "curve", f'    public-key = "{public}"']
    if secret is not None:
        lines.append(f'    secret-key = "{secret}"')
    return "\n".join(lines) + "\n"


def _write(path: Path, text: str, mode: int, overwrite: bool) -> None:
    flags = os.O_WRONLY | os.O_CREAT | (0 if overwrite else os.O_EXCL) | getattr(os, "O_BINARY", 0)
    try:
        fd = os.open(path, flags, mode)
    except FileExistsError:
        raise KeyFileError(f"{path} already exists; refusing to overwrite a key (pass --force to replace it)") from None
    except OSError as exc:
        raise KeyFileError(f"cannot write {path}: {exc.strerror}") from None
    try:
        if WINDOWS:
            if mode == 0o600:
                from .winacl import restrict_to_owner

                restrict_to_owner(path)  # before the secret is written
        else:
            os.chmod(fd, mode)  # O_CREAT's mode is filtered by the umask and ignored for existing files
        if overwrite:
            os.ftruncate(fd, 0)
        os.write(fd, text.encode("ascii"))
    except OSError as exc:
        raise KeyFileError(f"cannot write {path}: {exc.strerror or exc}") from None
    finally:
        os.close(fd)


def write_keypair(out: str | Path, pair: KeyPair | None = None, *, overwrite: bool = False) -> tuple[Path, Path]:
    """Write ``OUT.key_secret`` (0600) and ``OUT.key`` (0644); return (public path, secret path)."""
    pair = pair or generate_keypair()
    base = Path(out)
    if base.name.endswith(SECRET_SUFFIX) or base.name.endswith(PUBLIC_SUFFIX):
        base = base.with_name(base.name.rsplit(".", 1)[0])
    if not base.parent.is_dir():
        raise KeyFileError(f"directory {base.parent} does not exist")
    public_path = base.with_name(base.name + PUBLIC_SUFFIX)
    secret_path = base.with_name(base.name + SECRET_SUFFIX)
    if not overwrite:
        for p in (public_path, secret_path):
            if p.exists():
                raise KeyFileError(f"{p} already exists; refusing to overwrite a key (pass --force to replace it)")
    _write(secret_path, _body(pair.public, pair.secret, "#   CURVE secret key: never copy it off this machine."),
           0o600, overwrite)
    _write(public_path, _body(pair.public, None, "#   CURVE public key: give it to the rig (mimir keys trust)."),
           0o644, overwrite)
    return public_path, secret_path


def _read_fields(path: Path) -> dict[str, str]:
    try:
        text = path.read_text(encoding="ascii", errors="strict")
    except FileNotFoundError:
        raise KeyFileError(f"{path}: no such key file") from None
    except (OSError, UnicodeError) as exc:
        raise KeyFileError(f"cannot read key file {path}: {exc}") from None
    fields: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        name, value = (s.strip() for s in line.split("=", 1))
        fields[name] = value.strip("\"'")
    return fields


def _check_key(path: Path, name: str, value: str | None) -> str:
    if value is None:
        raise KeyFileError(f"{path}: no {name} in this file (is it a mimir/ZeroMQ key file?)")
    if not is_z85_key(value):
        raise KeyFileError(f"{path}: {name} is not a 40-character Z85 key")
    return value


def _exposure(path: Path, mode: int) -> str | None:
    """Why a secret key file is not owner-only, or None (mode bits on POSIX, the access list on Windows)."""
    if WINDOWS:
        from .winacl import exposure

        return exposure(path)
    if mode & 0o077:
        return f"secret key is readable by others (mode {stat.S_IMODE(mode):o}); run `chmod 600 {path}`"
    return None


def load_public_key(path: str | Path) -> str:
    """The public key (Z85) of a ``.key`` or ``.key_secret`` file."""
    path = Path(path)
    return _check_key(path, "public-key", _read_fields(path).get("public-key"))


def load_secret_key(path: str | Path) -> KeyPair:
    """The key pair of a ``.key_secret`` file; refuses files that group or others may read."""
    path = Path(path)
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise KeyFileError(f"{path}: no such key file") from None
    except OSError as exc:
        raise KeyFileError(f"cannot read key file {path}: {exc.strerror}") from None
    if not stat.S_ISREG(mode):
        raise KeyFileError(f"{path}: not a regular file")
    fields = _read_fields(path)
    if "secret-key" not in fields:
        raise KeyFileError(f"{path}: no secret-key in this file (is it the public .key? pass NAME{SECRET_SUFFIX})")
    problem = _exposure(path, mode)
    if problem:
        raise KeyFileError(f"{path}: {problem}")
    public = _check_key(path, "public-key", fields.get("public-key"))
    secret = _check_key(path, "secret-key", fields.get("secret-key"))
    try:
        derived = zmq.curve_public(secret.encode("ascii")).decode("ascii")
    except (zmq.ZMQError, ValueError) as exc:
        raise KeyFileError(f"{path}: secret key is not valid: {exc}") from None
    if derived != public:
        raise KeyFileError(f"{path}: public key does not belong to the secret key")
    return KeyPair(public, secret)
