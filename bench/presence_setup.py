"""Presence benchmark setup: migrate a fresh database, create members, a random contact graph and
a logged-in session for every member.

Run by presence_churn.py with the same environment as the server (DATABASE_URL, DEBUG).
Writes JSON to --out: {"members": [{"id": int, "session": str}, ...],
"contacts": [[index, ...], ...]} (contacts by member index, the same order as "members").

The graph is random and regular: every member has exactly --contacts contacts. It is built from
a ring lattice on a shuffled order, then rewired with degree-preserving double-edge swaps, all
from random.Random(--seed), so the same arguments give the same graph.
"""

import argparse
import json
import os
import random
import sys
import time
from pathlib import Path

# Run with cwd = the Parley checkout being measured (presence_churn.py --repo).
sys.path.insert(0, os.getcwd())
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "parley.settings")


def regular_graph(n: int, k: int, rng: random.Random) -> list[tuple[int, int]]:
    """The edges (a < b) of a random k-regular graph on n nodes."""
    if not 0 <= k < n or (n * k) % 2:
        raise SystemExit(f"no {k}-regular graph on {n} members (need k < n and n*k even)")
    order = list(range(n))
    rng.shuffle(order)
    edges: set[tuple[int, int]] = set()

    def add(a: int, b: int) -> None:
        edges.add((a, b) if a < b else (b, a))

    for i in range(n):
        for d in range(1, k // 2 + 1):
            add(order[i], order[(i + d) % n])
    if k % 2:
        for i in range(n // 2):
            add(order[i], order[i + n // 2])
    assert len(edges) == n * k // 2, (len(edges), n * k // 2)
    # Degree-preserving rewiring: (a,b),(c,d) -> (a,c),(b,d) or (a,d),(b,c).
    edge_list = sorted(edges)
    for _ in range(10 * len(edge_list)):
        i, j = rng.randrange(len(edge_list)), rng.randrange(len(edge_list))
        (a, b), (c, d) = edge_list[i], edge_list[j]
        if len({a, b, c, d}) < 4:
            continue
        if rng.random() < 0.5:
            c, d = d, c
        e1 = (a, c) if a < c else (c, a)
        e2 = (b, d) if b < d else (d, b)
        if e1 in edges or e2 in edges:
            continue
        edges.difference_update((edge_list[i], edge_list[j]))
        edges.update((e1, e2))
        edge_list[i], edge_list[j] = e1, e2
    return sorted(edges)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--members", type=int, required=True)
    parser.add_argument("--contacts", type=int, required=True)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()

    import django

    django.setup()
    from django.contrib.auth import get_user_model
    from django.contrib.auth.hashers import make_password
    from django.contrib.sessions.backends.db import SessionStore
    from django.core.management import call_command

    from accounts.models import Contact

    started = time.monotonic()
    call_command("migrate", verbosity=0, interactive=False)
    migrated = time.monotonic()

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

    edges = regular_graph(args.members, args.contacts, random.Random(args.seed))  # noqa: S311 - a test graph
    rows = []
    for a, b in edges:
        rows.append(Contact(member=users[a], other=users[b]))
        rows.append(Contact(member=users[b], other=users[a]))
    Contact.objects.bulk_create(rows, batch_size=5000)
    contacts: list[list[int]] = [[] for _ in users]
    for a, b in edges:
        contacts[a].append(b)
        contacts[b].append(a)

    members = []
    for user in users:
        session = SessionStore()
        session["_auth_user_id"] = str(user.pk)
        session["_auth_user_backend"] = "django.contrib.auth.backends.ModelBackend"
        session["_auth_user_hash"] = user.get_session_auth_hash()
        session.create()
        members.append({"id": user.pk, "session": session.session_key})

    Path(args.out).write_text(json.dumps({"members": members, "contacts": contacts}))
    print(
        f"setup: migrate {migrated - started:.1f}s, {len(members)} members, "
        f"{len(edges)} contact pairs + sessions {time.monotonic() - migrated:.1f}s",
        file=sys.stderr,
    )


if __name__ == "__main__":
    main()
