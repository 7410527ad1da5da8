from django.contrib.auth.models import AbstractUser
from django.db import models


class User(AbstractUser):
    """A Parley member. Signs in by username or email; shown to others by `name`."""

    display_name = models.CharField(
        max_length=50,
        blank=True,
        help_text="How other members see you. Leave empty to use your username.",
    )

    @property
    def name(self) -> str:
        return self.display_name or self.username

    def __str__(self) -> str:
        return self.name
