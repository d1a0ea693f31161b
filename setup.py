"""Packaging for the APEL-style accounting suite (SSM messenger + APEL server)."""

from setuptools import find_packages, setup

setup(
    name="apel-suite",
    version="0.1.0",
    description="APEL-compatible accounting: SSM messaging, record loader, summariser, publisher",
    python_requires=">=3.9",
    # bin/ and schemas/ keep the layout packagers know, and are installed as the
    # importable packages apel_bin (entry points) and apel_schemas (SQL files).
    packages=find_packages(include=["acctbase", "acctbase.*", "ssm", "ssm.*", "apel", "apel.*"])
    + ["apel_bin", "apel_schemas"],
    package_dir={"apel_bin": "bin", "apel_schemas": "schemas"},
    package_data={"apel_schemas": ["*.sql"]},
    install_requires=[
        "stomp.py>=8,<10",
        "cryptography>=42",
        # cryptography has no public PKCS#7 verify API; asn1crypto parses the
        # CMS SignedData so the signature can be checked in-process.
        "asn1crypto>=1.5",
        # Certificate paths are judged by OpenSSL's own validator (X509Store and
        # X509StoreContext over the hashed CA directory), so the verdict is exactly
        # `openssl verify -CApath`'s; cryptography's verifier is web-PKI policy, has no
        # CRLs and refuses v1 roots.
        "pyOpenSSL>=24.0",
        "PyMySQL>=1.1",
        "python-daemon>=3.0",
        "ldap3>=2.9",
        "dirq>=1.8",
        # GOCDB answers (apelauth) and CAR/StAR messages from remote sites are parsed
        # from the network; defusedxml refuses entity-expansion, external-entity and
        # DTD tricks the stdlib parser accepts.
        "defusedxml>=0.7",
    ],
    entry_points={
        "console_scripts": [
            "ssmsend = apel_bin.ssmsend:main",
            "ssmreceive = apel_bin.ssmreceive:main",
            "apeldbloader = apel_bin.apeldbloader:main",
            "apelsummariser = apel_bin.apelsummariser:main",
            "apeldbunloader = apel_bin.apeldbunloader:main",
            "apelauth = apel_bin.apelauth:main",
        ],
        "apel.backends": [
            "mysql = apel.db.mysql_backend:MySQLBackend",
            "sqlite = apel.db.sqlite_backend:SQLiteBackend",
        ],
    },
)
