"""What `make run` tells a newcomer: which Redis, which database number, which keys."""

import importlib.util
import json

from tests.support import ROOT


def load_dev_script():
    spec = importlib.util.spec_from_file_location("dev_script", ROOT / "scripts" / "dev.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_make_run_banner_names_the_redis_database_and_this_installations_keys(tmp_path):
    dev = load_dev_script()
    dev.DEMO_FILE = tmp_path / "demo.json"
    dev.DEMO_FILE.write_text(
        json.dumps(
            {
                "tenant": "demo",
                "api_key": "bc_demo",
                "admin_username": "admin",
                "admin_password": "pw",
                "agent": "assistant",
                "provider": "offline",
                "model": "offline-1",
                "redis_keys": "bc:3f9a1c0b7d2e:*",
            }
        )
    )

    text = dev.banner(
        port=8000, flower_port=5555, redis_url="redis://127.0.0.1:6379/0", private=None
    )

    redis_line = next(line for line in text.splitlines() if line.strip().startswith("Redis"))
    assert "redis://127.0.0.1:6379/0" in redis_line
    assert "database 0" in redis_line
    assert "bc:3f9a1c0b7d2e:*" in redis_line
    # manage.py finds the running stack's Redis by itself: the chat line needs no REDIS_URL.
    assert (
        '  DEBUG=1 .venv/bin/python manage.py chat agent:assistant:main "What time is it?"' in text
    )
