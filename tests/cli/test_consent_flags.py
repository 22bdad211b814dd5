"""fogsync.cli: the consent flags of ``sync`` (CLI.md, "Refusals that protect the share")."""

from __future__ import annotations


def test_sync_parses_the_consent_flags():
    from fogsync.cli.main import build_parser

    args = build_parser().parse_args(["sync", "docs", "--accept-rollback", "--allow-mass-delete"])
    assert (args.names, args.accept_rollback, args.allow_mass_delete) == (["docs"], True, True)
