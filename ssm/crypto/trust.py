"""The CA store: the CAs (and CRLs) of one hashed CA directory, and OpenSSL's verdict on
a certificate against them.

Held by its owner (the receiver makes one at start-up): what OpenSSL read from the
directory is worth keeping between messages, for as long as the owner runs.
"""

from __future__ import annotations

import functools
import os
import re
import threading
from collections.abc import Sequence
from typing import Optional

import OpenSSL.crypto
from cryptography import x509

from ssm.crypto.errors import CryptoException
from ssm.crypto.files import StatKey, stat_key
from ssm.crypto.reasons import explain

# Files OpenSSL's hashed-directory lookup reads: <hash>.N certificates, <hash>.rN CRLs.
_HASHED_NAME = re.compile(r"^([0-9a-f]{8})\.(r?)[0-9]+$")


class TrustStore:
    """The CAs (and, with ``check_crls``, CRLs) of one hashed CA directory, and the
    verdict on a certificate against them.

    OpenSSL's own validator makes the verdict, through pyOpenSSL, so it is the one
    ``openssl verify -CApath DIR -purpose any [-crl_check_all]`` gives, the tool the
    existing SSM used and operators' IGTF bundles are made for. No purpose is checked:
    grid host certificates lack emailProtection.

    OpenSSL keeps what it read from the directory, so a file rewritten in place
    (fetch-crl does this) would go unseen: each call costs a ``stat`` of the directory
    and of the files the chain came from, and the store is made afresh when any of
    them changed (or, after a refusal, when any file in the directory did).
    """

    def __init__(self, capath: str, check_crls: bool) -> None:
        self.capath = capath
        self.check_crls = bool(check_crls)
        self._lock = threading.Lock()
        self._snapshot: Optional[_Snapshot] = None

    def validate(
        self, cert: x509.Certificate, untrusted: Sequence[x509.Certificate] = (), what: str = "certificate"
    ) -> None:
        """Raise CryptoException saying why unless ``cert`` chains to a CA in capath
        (through ``untrusted`` intermediates, e.g. a message's certificate bag) and
        neither it nor a CA above it is expired or revoked."""
        leaf = _openssl_x509(cert)
        bag = [_openssl_x509(c) for c in untrusted if c is not cert]
        snapshot = self._current()
        try:
            if not self._changed(snapshot, snapshot.files_for(snapshot.verify(leaf, bag))):
                return
        except OpenSSL.crypto.X509StoreContextError as error:
            if not self._changed(snapshot, None):
                raise CryptoException(explain(error, cert, what, self.capath)) from error
        # What the verdict rested on changed on disk since OpenSSL read it: judge again.
        try:
            self._rebuild().verify(leaf, bag)
        except OpenSSL.crypto.X509StoreContextError as error:
            raise CryptoException(explain(error, cert, what, self.capath)) from error

    def _current(self) -> _Snapshot:
        snapshot = self._snapshot
        if snapshot is not None and _dir_key(self.capath) == snapshot.dir_key:
            return snapshot
        return self._rebuild()

    def _rebuild(self) -> _Snapshot:
        with self._lock:
            self._snapshot = _Snapshot(self.capath, self.check_crls)
            return self._snapshot

    def _changed(self, snapshot: _Snapshot, names: Optional[list[str]]) -> bool:
        """Whether the directory, or the named files (None: all), changed since ``snapshot``."""
        try:
            if stat_key(self.capath) != snapshot.dir_key:
                return True
            for name in snapshot.files if names is None else names:
                if stat_key(os.path.join(self.capath, name)) != snapshot.files[name]:
                    return True
        except OSError:
            return True
        return False


class _Snapshot:
    """An OpenSSL store over one CA directory, and the directory as it was when made.

    The store reads the directory itself (``X509_LOOKUP_hash_dir``, as ``openssl
    verify -CApath``), lazily, and keeps what it read; the stat keys say when that may
    no longer be what is on disk.
    """

    def __init__(self, capath: str, check_crls: bool) -> None:
        self.dir_key = _dir_key(capath)
        try:
            names = os.listdir(capath)
        except OSError as e:
            raise CryptoException(f"cannot read CA directory {capath}: {e.strerror}") from e
        self.files: dict[str, StatKey] = {}
        self.by_hash: dict[str, list[str]] = {}
        for name in names:
            match = _HASHED_NAME.match(name)
            if not match or (match.group(2) and not check_crls):
                continue
            try:
                self.files[name] = stat_key(os.path.join(capath, name))
            except OSError:
                continue  # a dangling link: OpenSSL cannot read it either
            self.by_hash.setdefault(match.group(1), []).append(name)
        self.store = OpenSSL.crypto.X509Store()
        if check_crls:
            flags = OpenSSL.crypto.X509StoreFlags
            self.store.set_flags(flags.CRL_CHECK | flags.CRL_CHECK_ALL)
        self.store.load_locations(None, capath)

    def verify(self, leaf: OpenSSL.crypto.X509, bag: list[OpenSSL.crypto.X509]) -> list[OpenSSL.crypto.X509]:
        """The validated chain, leaf first; X509StoreContextError says why there is none."""
        return OpenSSL.crypto.X509StoreContext(self.store, leaf, bag or None).get_verified_chain()

    def files_for(self, chain: list[OpenSSL.crypto.X509]) -> list[str]:
        """The files OpenSSL may have read to build and check ``chain``: those named
        after a chain certificate's subject (its CA certificates and their CRLs)."""
        names: list[str] = []
        for cert in chain:
            names += self.by_hash.get(f"{cert.subject_name_hash():08x}", ())
        return names


def _dir_key(capath: str) -> StatKey:
    try:
        return stat_key(capath)
    except OSError as e:
        raise CryptoException(f"cannot read CA directory {capath}: {e.strerror}") from e


@functools.lru_cache(maxsize=1024)
def _openssl_x509(cert: x509.Certificate) -> OpenSSL.crypto.X509:
    """OpenSSL's form of a certificate, converted once: a sender's certificate and its
    CAs come with every message. Keyed by the certificate, whose equality and hash are
    its DER's; nothing about trust is cached here."""
    return OpenSSL.crypto.X509.from_cryptography(cert)
