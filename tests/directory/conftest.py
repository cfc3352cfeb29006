from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.store.redis_server import running_redis


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One real redis-server for the session; tests keep apart by key prefix."""
    with running_redis(Path(tmp_path_factory.mktemp("redis"))) as url:
        yield url
