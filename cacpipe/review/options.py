"""The patient text each review output may show (burned-in text, page headers), and the anonymised id.

Which fields are allowed is the setting ``review.fields`` (cacpipe.config.ReviewSettings).

The anonymised id is ``anon-`` + 10 hex digits of HMAC-SHA256(secret, patient id). Without a
secret, a patient id (often a 6-8 digit number) is recovered from its hash in well under a
second by trying them all, so there is always one: the salt given by the caller (``review.salt``:
one shared secret for every site of a multi-site study, so ids match across sites), else a
random per-installation secret created on first use in ``$CACPIPE_CONFIG_DIR/anonymisation_salt``
(owner-only, cacpipe.files). Keep that file private and back it up: ids made with another secret
do not match.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import tempfile
from collections.abc import Sequence
from pathlib import Path

from .. import env
from ..config import DISPLAY_FIELDS, secret_id
from ..errors import ConfigError
from ..files import FILE_MODE, make_private_dir

SALT_FILE = "anonymisation_salt"


def salt_path() -> Path:
    """Where this installation's secret lives: $CACPIPE_CONFIG_DIR/anonymisation_salt."""
    return env.config_dir() / SALT_FILE


def _create_secret(path: Path) -> None:
    """Write a new random secret to ``path`` unless one appears first. The file appears complete or not
    at all (written aside, then hard-linked into place), so parallel workers starting a first scan all
    end up with the same secret."""
    make_private_dir(path.parent)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(fd, FILE_MODE)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(secrets.token_hex(32) + "\n")
            f.flush()
            os.fsync(f.fileno())
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass  # another process was first: its secret is the installation's
    finally:
        os.unlink(tmp)


def installation_salt() -> str:
    """This installation's random secret (64 hex digits), created owner-only on first use."""
    path = salt_path()
    try:
        text = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        _create_secret(path)
        return installation_salt()
    except OSError as exc:
        raise ConfigError(f"cannot read the anonymisation secret {path} ({exc}); fix its permissions or set "
                          f"${env.CONFIG_DIR}") from exc
    if not text:
        raise ConfigError(f"the anonymisation secret {path} is empty; delete it to create a new one (ids change) "
                          "or restore it from a backup")
    return text


def resolve_salt(salt: str | None = None) -> str:
    """The secret to key anonymised ids with: ``salt`` when given (not empty), else the installation's."""
    return salt if salt else installation_salt()


def salt_id(salt: str | None = None) -> str:
    """The public name (8 hex digits) of the secret in use, recorded in results so that sites can check
    that they share one without revealing it."""
    return secret_id(resolve_salt(salt))


def anonymised_id(patient_id: str | None, salt: str | None = None) -> str:
    """A stable pseudonym for a patient id: ``anon-`` + 10 hex digits of HMAC-SHA256(secret, id).

    ``salt`` empty or None: this installation's secret (:func:`installation_salt`).
    """
    digest = hmac.new(resolve_salt(salt).encode(), (patient_id or "").encode(), hashlib.sha256).hexdigest()
    return f"anon-{digest[:10]}"


def study_pseudonym(study_uid: str | None, salt: str | None = None) -> str:
    """A stable pseudonym for a StudyInstanceUID (folder names under ``review.anonymous_names``):
    ``study-`` + 10 hex digits of HMAC-SHA256(secret, uid), keyed like :func:`anonymised_id`."""
    digest = hmac.new(resolve_salt(salt).encode(), b"study\x1f" + (study_uid or "").encode(), hashlib.sha256)
    return f"study-{digest.hexdigest()[:10]}"


def page_patient_id(patient_id: str | None, anonymous: bool, salt: str | None = None) -> str:
    """The patient id a review page carries in its data block, and so in the ratings and corrections
    files it downloads: the anonymised id under ``review.anonymous_names``, else the PatientID."""
    return anonymised_id(patient_id, salt) if anonymous else (patient_id or "")


def scrub(text: str, patient_id: str | None, salt: str | None = None) -> str:
    """``text`` with the PatientID replaced by the anonymised id (a reason or flag message may name a
    source file whose folder is the PatientID). Ids shorter than 3 characters are left: they would
    replace parts of ordinary words."""
    if not patient_id or len(patient_id) < 3 or patient_id not in text:
        return text
    return text.replace(patient_id, anonymised_id(patient_id, salt))


def display_items(study: dict, fields: Sequence[str], salt: str | None = None) -> list[tuple[str, str]]:
    """(label, value) pairs of the allowed ``fields`` (keys of DISPLAY_FIELDS), in the order given."""
    out = []
    for key in fields:
        if key == "anon_id":
            value = anonymised_id(study.get("patient_id"), salt)
        else:
            value = study.get(key)
        if key == "study_date" and value and len(str(value)) == 8 and str(value).isdigit():
            value = f"{str(value)[:4]}-{str(value)[4:6]}-{str(value)[6:]}"
        out.append((DISPLAY_FIELDS[key], "" if value is None else str(value)))
    return out
