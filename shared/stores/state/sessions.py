"""Chat session turns, kept where every worker can read them.

`LocalSessionStore` (zero-setup default) keeps one JSON file per session under DATA_DIR: fine for
one process on one machine. `TableSessionStore` (shared/stores/state/tables.py) is the multi-worker store.
Sessions are keyed by user *and* session id, so one user can never read another's session, even
with a guessed session id.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    pass


@dataclass
class Turn:
    user_message: str
    assistant_message: str
    timestamp: str
    memories_used: list[str]


class SessionStore(Protocol):
    def recent_turns(self, user_id: str, session_id: str, limit: int) -> list[Turn]: ...

    def append_turn(self, user_id: str, session_id: str, turn: Turn) -> None: ...

    def remove_turn(self, user_id: str, session_id: str, turn: Turn) -> int:
        """Removes a turn appended before (same time and text): a turn that lost a race to an erasure."""
        ...

    def delete_user(self, user_id: str) -> int: ...

    def export_user(self, user_id: str) -> dict[str, list[Turn]]: ...


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()[:32]


class LocalSessionStore:
    def __init__(self, root: Path) -> None:
        self.root = root
        self._lock = threading.Lock()

    def _path(self, user_id: str, session_id: str) -> Path:
        return self.root / _digest(user_id) / f"{_digest(session_id)}.json"

    def recent_turns(self, user_id: str, session_id: str, limit: int) -> list[Turn]:
        path = self._path(user_id, session_id)
        with self._lock:
            if not path.exists():
                return []
            data = json.loads(path.read_text(encoding="utf-8"))
        turns = [Turn(**item) for item in data.get("turns", [])]
        return turns[-limit:] if limit else []

    def append_turn(self, user_id: str, session_id: str, turn: Turn) -> None:
        path = self._path(user_id, session_id)
        with self._lock:
            path.parent.mkdir(parents=True, exist_ok=True)
            data = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {"turns": []}
            data["session_id"] = session_id
            data["turns"].append(asdict(turn))
            # Write-then-rename: a crash leaves the old file or the new one, never half of one.
            tmp = path.with_suffix(".tmp")
            tmp.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
            os.replace(tmp, path)

    def remove_turn(self, user_id: str, session_id: str, turn: Turn) -> int:
        path = self._path(user_id, session_id)
        with self._lock:
            if not path.exists():
                return 0
            data = json.loads(path.read_text(encoding="utf-8"))
            kept = [item for item in data.get("turns", []) if Turn(**item) != turn]
            removed = len(data.get("turns", [])) - len(kept)
            if kept:
                data["turns"] = kept
                tmp = path.with_suffix(".tmp")
                tmp.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
                os.replace(tmp, path)
            else:
                path.unlink()
        return removed

    def delete_user(self, user_id: str) -> int:
        folder = self.root / _digest(user_id)
        count = 0
        with self._lock:
            if folder.exists():
                for file in folder.glob("*.json"):
                    file.unlink()
                    count += 1
        return count

    def export_user(self, user_id: str) -> dict[str, list[Turn]]:
        folder = self.root / _digest(user_id)
        sessions: dict[str, list[Turn]] = {}
        with self._lock:
            for file in sorted(folder.glob("*.json")) if folder.exists() else []:
                data = json.loads(file.read_text(encoding="utf-8"))
                sessions[data.get("session_id", file.stem)] = [Turn(**item) for item in data.get("turns", [])]
        return sessions
