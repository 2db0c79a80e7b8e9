"""Owner-only secret key files on Windows: the file's access list, not a mode, is what protects it.

Windows has no permission bits (``os.stat`` reports 0o666 for any writable
file, and ``os.chmod`` only toggles read-only), so a secret key file is
protected by its DACL:

* :func:`restrict_to_owner` replaces the DACL with one entry, full control
  for the current user, and marks it *protected* (nothing inherited from
  the folder), the way ``icacls FILE /inheritance:r /grant:r USER:F`` does;
* :func:`exposure` is the check made before a secret key is used. As
  OpenSSH for Windows does for private keys, an *allow* entry that grants
  reading (``FILE_READ_DATA``, ``GENERIC_READ`` or ``GENERIC_ALL``) may only
  name the current user, SYSTEM or the Administrators group; any other
  (Users, Everyone, another account), or no DACL at all (everyone may do
  anything), refuses the key. Deny entries and inherit-only entries (which
  do not apply to the file itself) are not counted.

The decision (:func:`foreign_readers`) is plain Python, tested on Linux; the
calls into Windows go through pywin32 (``win32security``) and have never run
in CI.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

__all__ = ["Ace", "foreign_readers", "exposure", "restrict_to_owner", "SYSTEM_SID", "ADMINISTRATORS_SID"]

SYSTEM_SID = "S-1-5-18"
ADMINISTRATORS_SID = "S-1-5-32-544"
ACCESS_ALLOWED_ACE_TYPE = 0
INHERIT_ONLY_ACE = 0x08
FILE_READ_DATA = 0x0001
GENERIC_ALL = 0x10000000
GENERIC_READ = 0x80000000
READ_BITS = FILE_READ_DATA | GENERIC_ALL | GENERIC_READ


@dataclass(frozen=True)
class Ace:
    """One access-control entry as read from a DACL: type, flags, access mask, and the SID it names."""

    type: int
    flags: int
    mask: int
    sid: str
    name: str = ""


def foreign_readers(aces: list[Ace] | None, user_sid: str) -> list[str]:
    """Who besides the user, SYSTEM and Administrators may read a file with DACL ``aces`` (None: no DACL)."""
    if aces is None:
        return ["everyone (the file has no access list)"]
    trusted = {user_sid, SYSTEM_SID, ADMINISTRATORS_SID}
    out = []
    for ace in aces:
        if ace.type != ACCESS_ALLOWED_ACE_TYPE or ace.flags & INHERIT_ONLY_ACE or not ace.mask & READ_BITS:
            continue
        if ace.sid not in trusted:
            out.append(ace.name or ace.sid)
    return out


def _user_sid():  # pragma: no cover - Windows only
    import win32api
    import win32security

    token = win32security.OpenProcessToken(win32api.GetCurrentProcess(), win32security.TOKEN_QUERY)
    return win32security.GetTokenInformation(token, win32security.TokenUser)[0]


def _read_aces(path: Path) -> tuple[list[Ace] | None, str]:  # pragma: no cover - Windows only
    """The file's DACL entries (None: no DACL) and the current user's SID."""
    import win32security

    sd = win32security.GetNamedSecurityInfo(str(path), win32security.SE_FILE_OBJECT,
                                            win32security.DACL_SECURITY_INFORMATION)
    dacl = sd.GetSecurityDescriptorDacl()
    user = win32security.ConvertSidToStringSid(_user_sid())
    if dacl is None:
        return None, user
    aces = []
    for i in range(dacl.GetAceCount()):
        (ace_type, flags), mask, sid = dacl.GetAce(i)[:3]
        try:
            name, domain, _ = win32security.LookupAccountSid(None, sid)
            label = f"{domain}\\{name}" if domain else name
        except win32security.error:
            label = ""
        aces.append(Ace(ace_type, flags, mask, win32security.ConvertSidToStringSid(sid), label))
    return aces, user


def exposure(path: Path) -> str | None:
    """Why the secret key at ``path`` is not owner-only (for the refusal message), or None when it is."""
    aces, user = _read_aces(path)
    readers = foreign_readers(aces, user)
    if not readers:
        return None
    return (f"secret key is readable by {', '.join(readers)}; run `mimir keys generate --force` again or "
            f"`icacls {path} /inheritance:r /grant:r %USERNAME%:F`")


def restrict_to_owner(path: Path) -> None:  # pragma: no cover - Windows only
    """Give the file one protected DACL entry: full control for the current user (see module docstring)."""
    import ntsecuritycon
    import win32security

    dacl = win32security.ACL()
    dacl.AddAccessAllowedAce(win32security.ACL_REVISION, ntsecuritycon.FILE_ALL_ACCESS, _user_sid())
    win32security.SetNamedSecurityInfo(
        str(path), win32security.SE_FILE_OBJECT,
        win32security.DACL_SECURITY_INFORMATION | win32security.PROTECTED_DACL_SECURITY_INFORMATION,
        None, None, dacl, None)
