"""Benchmark setup: migrate a fresh database and create one public room with N logged-in members.

Run by chat_fanout.py with the same environment as the server (DATABASE_URL, REDIS_URL, DEBUG).
Writes JSON to --out: {"room_id": int, "members": [{"id": int, "session": str}, ...]}.
"""

import argparse
import json
import os
import sys
import time
from pathlib import Path

# Run with cwd = the Parley checkout being measured (chat_fanout.py --repo).
sys.path.insert(0, os.getcwd())
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "parley.settings")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--members", type=int, required=True)
    parser.add_argument(
        "--room-id-floor",
        type=int,
        default=0,
        help="number the room above this (keeps pub/sub group names unique)",
    )
    parser.add_argument("--out", required=True)
    args = parser.parse_args()

    import django

    django.setup()
    from django.contrib.auth import get_user_model
    from django.contrib.auth.hashers import make_password
    from django.contrib.sessions.backends.db import SessionStore
    from django.core.management import call_command
    from django.db import connection

    from rooms.models import Membership
    from rooms.services import room_create

    started = time.monotonic()
    call_command("migrate", verbosity=0, interactive=False)
    migrated = time.monotonic()

    if args.room_id_floor:
        with connection.cursor() as cursor:
            if connection.vendor == "postgresql":
                cursor.execute(
                    "SELECT setval(pg_get_serial_sequence('rooms_room', 'id'), %s)",
                    [args.room_id_floor],
                )
            elif connection.vendor == "sqlite":
                cursor.execute(
                    "INSERT INTO sqlite_sequence (name, seq) VALUES ('rooms_room', %s)",
                    [args.room_id_floor],
                )

    User = get_user_model()
    password = make_password("bench-password-not-secret")
    User.objects.bulk_create(
        [
            User(username=f"bench{i:05d}", email=f"bench{i:05d}@example.invalid", password=password)
            for i in range(args.members)
        ],
        batch_size=1000,
    )
    users = list(User.objects.filter(username__startswith="bench").order_by("username"))
    assert len(users) == args.members, (len(users), args.members)

    room = room_create(creator=users[0], name="Benchmark room", topic="chat fan-out benchmark")
    Membership.objects.bulk_create(
        [Membership(room=room, member=user) for user in users[1:]], batch_size=1000
    )

    members = []
    for user in users:
        session = SessionStore()
        session["_auth_user_id"] = str(user.pk)
        session["_auth_user_backend"] = "django.contrib.auth.backends.ModelBackend"
        session["_auth_user_hash"] = user.get_session_auth_hash()
        session.create()
        members.append({"id": user.pk, "session": session.session_key})

    Path(args.out).write_text(json.dumps({"room_id": room.pk, "members": members}))
    print(
        f"setup: migrate {migrated - started:.1f}s, {len(members)} members + sessions "
        f"{time.monotonic() - migrated:.1f}s, room {room.pk}",
        file=sys.stderr,
    )


if __name__ == "__main__":
    main()
