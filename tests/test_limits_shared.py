"""Rate limits hold for the whole deployment, not per worker: across gunicorn workers and across hosts."""

import requests

from tests.gunicorn_helpers import served, service_env
from tests.helpers import KEY, server_url


def redis_url():
    """The Redis server the shared-limit test uses (.ci/run starts one), emptied; skip or fail without it."""
    url = server_url("TEST_REDIS_URL", "Redis", "shared-limit test")
    import redis

    redis.Redis.from_url(url).flushdb()
    return url


def dial_many(bases, count):
    """Dial `count` times, spreading the requests over `bases` in turn; return the statuses."""
    statuses = []
    for i in range(count):
        response = requests.post(bases[i % len(bases)] + "/voice/invoke-call", data={"phone": f"25471234{i:04d}"},
                                 headers=KEY, timeout=15)
        statuses.append(response.status_code)
    return statuses


def test_the_default_store_holds_the_limit_across_gunicorn_workers(tmp_path, simulated_at_url):
    env = service_env(tmp_path, simulated_at_url, WEB_CONCURRENCY=3, VOICE_RATE_LIMIT_PER_KEY="4 per minute")
    with served(env, tmp_path) as (base, _):
        statuses = dial_many([base], 12)
    assert statuses.count(200) == 4
    assert statuses[4:] == [429] * 8


def test_two_app_processes_sharing_redis_hold_one_limit(tmp_path, simulated_at_url):
    shared = redis_url()
    first_dir, second_dir = tmp_path / "a", tmp_path / "b"
    first_dir.mkdir()
    second_dir.mkdir()
    common = {"RATELIMIT_STORAGE_URI": shared, "VOICE_RATE_LIMIT_PER_KEY": "3 per minute", "WEB_CONCURRENCY": 1}
    with served(service_env(first_dir, simulated_at_url, **common), first_dir) as (first, _):
        with served(service_env(second_dir, simulated_at_url, **common), second_dir) as (second, _):
            statuses = dial_many([first, second], 8)
    assert statuses[:3] == [200, 200, 200]
    assert statuses[3:] == [429] * 5
