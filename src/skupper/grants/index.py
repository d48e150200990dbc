"""Grant id (uid) -> grant name, for the grant server: one dict lookup per request.

A request names its grant by uid, the store by name. Listing every grant to find one
made each request for an unknown id (anyone can send those) cost a scan of all grants
and a turn of the store's single worker thread. Instead the index is filled once, with
one listing the first time it is asked, and then kept current by the grant reconciler,
which adds each grant before it publishes the grant's URL: no one can hold a URL for a
grant the index has not seen. An unknown id is then a dict miss and costs nothing.

Names never change and a uid is never reused, so an entry can only go stale by the
grant's deletion: the reconciler forgets it when it sees the grant gone, and a caller,
which reads the grant by name anyway, forgets it on finding the grant gone (or under
another uid).
"""

from __future__ import annotations

import asyncio
import weakref

from skupper.resources import Resource
from skupper.store.interface import Store


class GrantIndex:
    def __init__(self) -> None:
        self._names: dict[str, str] = {}
        self._loaded = False
        self._loading: asyncio.Lock | None = None

    def __len__(self) -> int:
        return len(self._names)

    def add(self, grant: Resource) -> None:
        meta = grant.get("metadata") or {}
        uid, name = meta.get("uid"), meta.get("name")
        if isinstance(uid, str) and uid and isinstance(name, str) and name:
            self._names[uid] = name

    def forget(self, grant_id: str) -> None:
        self._names.pop(grant_id, None)

    def forget_name(self, name: str) -> None:
        """A grant was deleted (only its name is known then): a scan, but deletions are rare."""
        for grant_id in [uid for uid, known in self._names.items() if known == name]:
            del self._names[grant_id]

    async def name_of(self, store: Store, grant_id: str) -> str | None:
        if not self._loaded:
            await self._load(store)
        return self._names.get(grant_id)

    async def _load(self, store: Store) -> None:
        if self._loading is None:
            self._loading = asyncio.Lock()
        async with self._loading:  # many first requests at once: still one listing
            if self._loaded:
                return
            for grant in await store.list("AccessGrant"):
                self.add(grant)
            self._loaded = True


_indexes: weakref.WeakKeyDictionary[Store, GrantIndex] = weakref.WeakKeyDictionary()


def index_for(store: Store) -> GrantIndex:
    """The index of ``store``'s grants, shared by its grant server and its reconciler."""
    index = _indexes.get(store)
    if index is None:
        index = _indexes[store] = GrantIndex()
    return index
