"""`ccis-workbench verify ARTIFACT_DIR|URL`: signature, checksums, SBOM, attestation, kickstart, recomposition
(exit status: 0 verified, 1 a mismatch, each listed, 2 bad input); `publish`: a cloud.centos.org-style tree."""

from __future__ import annotations

import argparse
from pathlib import Path

from ccis_workbench.cli.common import add_json, catalog_root, emit_json


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "verify",
        help="verify a build's artifact folder or a published folder (local or http URL): "
        "signature, checksums, SBOM, provenance attestation, kickstart (exit 1 on a mismatch)",
    )
    p.add_argument("target", metavar="ARTIFACT_DIR|URL")
    p.add_argument(
        "--keyring",
        metavar="FILE",
        help="OpenPGP public keyring (gpgv --keyring) holding the signer's key; with it a signature is required",
    )
    p.add_argument(
        "--no-recompose",
        action="store_true",
        help="do not compose the attested profile at the attested commit from the catalog in use",
    )
    add_json(p)
    p.set_defaults(func=cmd_verify)

    p = sub.add_parser(
        "publish",
        help="lay builds out like cloud.centos.org (<release>/<arch>/images/, dated names, "
        "latest links, SBOM and attestation beside each image, one signed CHECKSUM)",
    )
    p.add_argument("artifact_dirs", nargs="+", metavar="ARTIFACT_DIR")
    p.add_argument(
        "--to",
        required=True,
        metavar="DIR|rsync://HOST[:PORT]/MODULE/PATH|[USER@]HOST:PATH",
        help="the published tree: a local folder, an rsync daemon's module, or a path over ssh (rsync on "
        "both sides); never overwrites a published file, a release appears at once",
    )
    p.add_argument(
        "--port",
        type=int,
        metavar="N",
        help="ssh or rsync daemon port (default: the URL's, else the ssh config's or 873)",
    )
    p.add_argument("--ssh-key", metavar="FILE", help="ssh identity file (default: the user's ssh config)")
    p.add_argument(
        "--ssh-option",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="an ssh -o option, e.g. UserKnownHostsFile=FILE (repeatable; BatchMode=yes always)",
    )
    p.add_argument(
        "--allow-rehearsal",
        action="store_true",
        help="publish REHEARSAL builds, under rehearsal/ only (never beside CentOS images)",
    )
    p.add_argument(
        "--sign-key",
        metavar="KEY",
        help="OpenPGP key gpg signs CHECKSUM with (default: the sign_key setting, else unsigned)",
    )
    add_json(p)
    p.set_defaults(func=cmd_publish)


def cmd_verify(args: argparse.Namespace) -> int:
    from ccis_workbench.core.errors import WorkbenchError
    from ccis_workbench.core.manifest import MANIFEST_NAME
    from ccis_workbench.flows.verify import CHECKSUM, verify

    folder = Path(args.target)
    if (
        "://" not in args.target
        and folder.is_dir()
        and not any((folder / n).is_file() for n in (CHECKSUM, MANIFEST_NAME))
    ):
        # bad input (exit 2), not a failed verification (exit 1): nothing here claims to be a build; a build
        # folder that lost its CHECKSUM still has its manifest, and is a mismatch
        raise WorkbenchError(
            "Not a build",
            f"no {CHECKSUM} and no {MANIFEST_NAME}: neither a build's artifact folder nor a published folder",
            file=str(folder),
            hint="give the folder `build` wrote, a published images/ folder, or its http(s) URL",
        )
    root = None if args.no_recompose else catalog_root(args).path
    report = verify(args.target, keyring=args.keyring, catalog_root=Path(root) if root else None)
    if args.json:
        emit_json(report.to_dict())
    else:
        for f in report.findings:
            print(f"[{'ok  ' if f.ok else 'FAIL'}] {f.check}: {f.detail}")
        print(report.summary())
    return 0 if report.verified else 1


def cmd_publish(args: argparse.Namespace) -> int:
    from ccis_workbench.cli.common import settings_from_args
    from ccis_workbench.flows.publish import publish_to

    key = settings_from_args(args, sign_key="sign_key").sign_key
    done = publish_to(
        [Path(d) for d in args.artifact_dirs],
        args.to,
        allow_rehearsal=args.allow_rehearsal,
        sign_key=key,
        port=args.port,
        ssh_key=args.ssh_key,
        ssh_options=tuple(args.ssh_option),
    )
    if args.json:
        emit_json([p.to_dict() for p in done])
        return 0
    for p in done:
        print(f"published into {p.folder} ({'signed' if p.signed else 'unsigned'}):")
        for name in p.files + p.latest:
            print(f"  {name}")
    return 0
