"""System account names for hub users (pure), and the guard against foreign accounts."""

from __future__ import annotations

import pytest

from gpulab.spawner.accounts import MAX_ACCOUNT_LENGTH, SAFE_ACCOUNT, AccountError, account_name, ensure_account


def test_plain_names_keep_their_name():
    assert account_name("alice", "gpulab-") == "gpulab-alice"
    assert account_name("bob_2", "") == "bob_2"


@pytest.mark.parametrize("hub_name", ["alice@example.com", "Alice.Smith", "ÿann", "a" * 40, "x y", "-lead"])
def test_other_names_become_safe_and_distinct(hub_name):
    name = account_name(hub_name, "gpulab-")
    assert SAFE_ACCOUNT.match(name) and len(name) <= MAX_ACCOUNT_LENGTH
    assert name.startswith("gpulab-")


def test_lookalike_names_do_not_share_an_account():
    names = {account_name(n, "gpulab-") for n in ("alice.smith", "alice-smith", "alice_smith", "Alice.Smith")}
    assert len(names) == 4


def test_names_that_cannot_be_accounts_are_refused():
    with pytest.raises(AccountError, match="not a valid account name"):
        account_name("1alice", "")
    with pytest.raises(AccountError, match="empty"):
        account_name("", "gpulab-")


@pytest.mark.root
async def test_an_existing_account_gpulab_did_not_create_is_refused(tmp_path):
    with pytest.raises(AccountError, match="was not created by gpulab"):
        await ensure_account("root", tmp_path)
