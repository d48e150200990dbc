import uuid

from skupper.base.ids import random_uuid


def test_random_uuid_is_a_canonical_version_4_uuid() -> None:
    for _ in range(200):
        text = random_uuid()
        parsed = uuid.UUID(text)
        assert str(parsed) == text
        assert parsed.version == 4
        assert parsed.variant == uuid.RFC_4122


def test_random_uuids_differ() -> None:
    assert len({random_uuid() for _ in range(1000)}) == 1000
