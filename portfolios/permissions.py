"""Object-permission checks of the portfolios app that go beyond visibility.

Seeing an account is decided by the visibility selectors (an invisible account is a 404);
changing one needs ``change_household`` on its household (the PMs of its team, Admin).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from portfolios.selectors import accounts_visible_to

if TYPE_CHECKING:
    from django.contrib.auth.models import AbstractBaseUser

    from portfolios.models import Account

ACCOUNT_CHANGE_FORBIDDEN = "You may view account {id} but not change it."


def account_can_change(*, user: AbstractBaseUser, account: Account) -> bool:
    """Whether ``user`` holds ``change_household`` on the account's household."""
    return accounts_visible_to(user, perm="change_household").filter(pk=account.pk).exists()
