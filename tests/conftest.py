import pytest

import tokenmath as tm


@pytest.fixture(scope="session")
def cat():
    return tm.load_catalog()


@pytest.fixture(scope="session")
def ds3(cat):
    return cat.model("deepseek-v3")
