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


@pytest.mark.root
async def test_an_accounts_home_is_its_own_even_when_home_root_has_changed(tmp_path):
    """A server or run of an account made under an earlier home_root gets the home the account
    has (the docker backend mounted home_root/<account>, which did not exist: the container died)."""
    import os
    import pwd
    import shutil
    from pathlib import Path

    from gpulab.spawner.accounts import home_of, remove_account

    account = f"gpulab-homes-{os.getpid()}"
    first, later = tmp_path / "first", tmp_path / "later"
    assert home_of(account, later) == later / account  # not made yet: where it will be
    await ensure_account(account, first)
    try:
        entry = pwd.getpwnam(account)
        assert home_of(account, later) == first / account == Path(entry.pw_dir)
        shutil.rmtree(first / account)  # deleted by hand: the next start makes it again, the account's
        await ensure_account(account, later)
        made = (first / account).stat()
        assert (made.st_uid, made.st_gid, oct(made.st_mode & 0o777)) == (entry.pw_uid, entry.pw_gid, "0o700")
    finally:
        remove_account(account)
