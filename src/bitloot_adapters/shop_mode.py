"""The mode a shop's data belongs to, fixed by its first use: ``sandbox`` or ``live``.

A data dir keeps its mode in ``<data dir>/mode``, written once by the first process that
starts on it; every later process (a server, ``bitloot worker``, any ``bitloot``
command) refuses to run on it in the other mode. Without this, a worker started without
the live variables on a live data dir would run in sandbox mode: buy from its own
sandbox Kinguin, mail a fake key to a paying customer and keep sandbox secrets beside the
live ones.

A database shared by several hosts (PostgreSQL) keeps its mode too, in its own table:
each host's data dir may be new, the database is where the shop lives.

A data dir from before the mode was kept is read by its secrets: sandbox starts keep the
sandbox API keys there, live ones never do (a data dir with a database and no sandbox
keys is live).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Final, Literal, Protocol, runtime_checkable

from bitloot_adapters import files

__all__ = [
    "MODE_FILE",
    "Mode",
    "ModeKeeper",
    "ModeMismatchError",
    "claim_data_dir",
    "claim_database",
    "data_dir_mode",
    "mode_of",
]

MODE_FILE: Final = "mode"
Mode = Literal["sandbox", "live"]
_MODES: Final = ("sandbox", "live")
# What a sandbox start keeps in secrets.json and a live one never does.
_SANDBOX_ONLY_NAME: Final = "sandbox_nowpayments_api_key"


class ModeMismatchError(Exception):
    """The data (dir or database) belongs to the other mode; the message says what to do."""


def mode_of(sandbox: bool) -> Mode:
    return "sandbox" if sandbox else "live"


def data_dir_mode(data_dir: Path) -> Mode | None:
    """The mode ``data_dir`` was first used in; None for a data dir never used."""
    try:
        recorded = (data_dir / MODE_FILE).read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        return _mode_from_secrets(data_dir)
    if recorded not in _MODES:
        raise ModeMismatchError(
            f"{data_dir / MODE_FILE} holds {recorded!r}, not sandbox or live: "
            "put back the mode this data dir was first used in"
        )
    return "sandbox" if recorded == "sandbox" else "live"


def _mode_from_secrets(data_dir: Path) -> Mode | None:
    try:
        kept = json.loads((data_dir / "secrets.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(kept, dict):
        return None
    if _SANDBOX_ONLY_NAME in kept:
        return "sandbox"
    return "live" if (data_dir / "bitloot.db").exists() else None


@runtime_checkable
class ModeKeeper(Protocol):
    """A store that records the mode of its first shop (PostgreSQL's)."""

    def claim_mode(self, mode: str) -> str: ...


def _refusal(where: str, recorded: str, mode: str, how_to_switch: str) -> ModeMismatchError:
    return ModeMismatchError(
        f"{where} belongs to a {recorded}-mode shop, and this process is in {mode} mode. "
        f"To run that shop, start in {recorded} mode ({how_to_switch}); for a {mode}-mode "
        "shop, use another data dir (--data-dir or BITLOOT_DATA_DIR) and database."
    )


def claim_database(store: ModeKeeper, mode: Mode, *, where: str, how_to_switch: str) -> None:
    """Record ``mode`` as the database's on its first use; refuse the other mode after."""
    recorded = store.claim_mode(mode)
    if recorded != mode:
        raise _refusal(where, recorded, mode, how_to_switch)


def claim_data_dir(data_dir: Path, mode: Mode, *, how_to_switch: str) -> None:
    """Record ``mode`` as ``data_dir``'s on its first use; refuse the other mode after.

    ``how_to_switch`` tells the reader how a process chooses its mode (the variable to
    set), for the refusal's message. ``data_dir`` must exist.
    """
    recorded = data_dir_mode(data_dir)
    if recorded is None:
        files.create_once(data_dir / MODE_FILE, f"{mode}\n".encode())
        # Two first starts at once in different modes: the one that wrote the file wins.
        recorded = data_dir_mode(data_dir)
    if recorded != mode:
        raise _refusal(f"the data dir {data_dir}", recorded or "?", mode, how_to_switch)
