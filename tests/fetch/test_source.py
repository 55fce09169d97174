"""FetchConfig (constructor defaults, from_settings with BUILDSYS_* overrides) and Source."""
import pytest

from buildsys.fetch import FetchConfig, Source


def test_defaults(dl_dir):
    config = FetchConfig.from_settings(dl_dir, {}, {})
    assert config.dl_dir == dl_dir
    assert config.premirrors == []
    assert config.mirrors == ["debian"]
    assert config.offline is False
    assert config.debian_archive is None


def test_environment_overrides(dl_dir):
    env = {"BUILDSYS_PREMIRRORS": "http://pre.example.invalid/dl  file:///srv/dl",
           "BUILDSYS_MIRRORS": "http://backup.example.invalid/dl\ndebian",
           "BUILDSYS_OFFLINE": "1",
           "BUILDSYS_DEBIAN_ARCHIVE": "http://archive.example.invalid/debian"}
    config = FetchConfig.from_settings(dl_dir, {}, env)
    assert config.premirrors == ["http://pre.example.invalid/dl", "file:///srv/dl"]
    assert config.mirrors == ["http://backup.example.invalid/dl", "debian"]
    assert config.offline is True
    assert config.debian_archive == "http://archive.example.invalid/debian"


def test_environment_wins_over_settings(dl_dir):
    settings = {"premirrors": ["http://settings.example.invalid/pre"],
                "mirrors": ["http://settings.example.invalid/mirror"]}
    from_settings = FetchConfig.from_settings(dl_dir, settings, {})
    assert from_settings.premirrors == ["http://settings.example.invalid/pre"]
    assert from_settings.mirrors == ["http://settings.example.invalid/mirror"]
    config = FetchConfig.from_settings(dl_dir, settings, {"BUILDSYS_MIRRORS": "http://env.example.invalid/m"})
    assert config.mirrors == ["http://env.example.invalid/m"]
    assert config.premirrors == ["http://settings.example.invalid/pre"]


def test_offline_other_than_1_is_online(dl_dir):
    assert FetchConfig.from_settings(dl_dir, {}, {"BUILDSYS_OFFLINE": "0"}).offline is False


def test_source_is_hashable_and_frozen():
    a = Source("https://example.invalid/a.tar.gz", sha256="0" * 64)
    b = Source("https://example.invalid/a.tar.gz", sha256="0" * 64)
    assert a == b and hash(a) == hash(b)
    assert len({a, b}) == 1
    with pytest.raises(AttributeError):
        a.url = "x"


def test_constructor_defaults(dl_dir):
    config = FetchConfig(dl_dir=dl_dir)
    assert (config.premirrors, config.mirrors, config.offline, config.debian_archive, config.progress) == \
        ([], ["debian"], False, None, False)
