"""``eapkit serve``'s ``directory`` setting and the ``eapkit user`` commands on it."""

from __future__ import annotations

import io
import time
from pathlib import Path

import pytest

from eapkit.cli import main
from eapkit.directory import LocalDirectory, StoredDirectory
from eapkit.errors import ConfigError
from eapkit.radius.clients import Client
from eapkit.radius.dictionary import Attr
from eapkit.radius.hiding import hide_password
from eapkit.radius.packet import Code, decode, encode_request, new_request_authenticator
from eapkit.serve import ServeConfig, build_core, open_directory
from tests.radius.helpers import datagram

SECRET = b"directory-secret"


def test_directory_setting_parsed_and_checked() -> None:
    assert ServeConfig.from_dict({}).directory == "local"
    assert ServeConfig.from_dict({"directory": "store"}).directory == "store"
    with pytest.raises(ConfigError, match="directory"):
        ServeConfig.from_dict({"directory": "ldap"})


def test_users_in_the_store_log_in(tmp_path: Path) -> None:
    cfg = ServeConfig(db=tmp_path / "eapkit.db", methods=["gtc"], directory="store")
    cfg.store = f"sqlite:{tmp_path / 'shared.db'}"
    cfg.clients = [Client.of("127.0.0.1/32", SECRET.decode())]
    users = open_directory(cfg)
    assert isinstance(users, StoredDirectory)
    users.add("alice", "wonderland", iterations=1000)
    assert not LocalDirectory(cfg.db).list()  # not in the local table
    core = build_core(cfg, users, log_stream=io.StringIO())
    authenticator = new_request_authenticator()
    attrs = [
        (Attr.USER_NAME, b"alice"),
        (Attr.USER_PASSWORD, hide_password(b"wonderland", SECRET, authenticator)),
    ]
    data = encode_request(
        Code.ACCESS_REQUEST,
        1,
        attrs,
        SECRET,
        authenticator=authenticator,
        message_authenticator=True,
    )
    reply = datagram(core, data, ("127.0.0.1", 4000), time.time())
    assert decode(reply or b"").code == Code.ACCESS_ACCEPT


def test_user_commands_follow_the_config(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "serve.toml"
    store = tmp_path / "shared.db"
    config.write_text(f'db = "eapkit.db"\ndirectory = "store"\nstore = "sqlite:{store}"\n')
    assert main(["user", "add", "bob", "--password", "pw", "--config", str(config)]) == 0
    assert main(["user", "list", "--config", str(config)]) == 0
    assert capsys.readouterr().out.splitlines()[-1].startswith("bob\t")
    assert not LocalDirectory(tmp_path / "eapkit.db").list()
    assert main(["user", "del", "bob", "--config", str(config)]) == 0
    assert main(["user", "del", "bob", "--config", str(config)]) == 1
